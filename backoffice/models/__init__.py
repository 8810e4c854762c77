"""All models, importable from one place."""
from backoffice.models.account import (
    READER_ROLES,
    RESEARCH_ROLES,
    STAFF_ROLES,
    Account,
    AccountRole,
    OrganisationMember,
    RecoveryCode,
    Role,
    RoleGrantRequest,
    RoleGrantState,
)
from backoffice.models.audit import GENESIS_HASH, AuditChainLock, AuditCheckpoint, AuditEvent, AuditVerification
from backoffice.models.base import Base, utcnow
from backoffice.models.checks import (
    OPEN_FINDING_STATES,
    CheckKind,
    CheckOutcome,
    CheckRun,
    ExpiryReminder,
    Finding,
    FindingSeverity,
    FindingState,
)
from backoffice.models.criteria import CatalogueImpact, CatalogueImpactProvider, CriteriaCatalogue, Criterion
from backoffice.models.exclusion import (
    ExclusionJudgement,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    ExclusionVerdict,
)
from backoffice.models.lockout import AttemptKind, FailedAttempt
from backoffice.models.outbox import DeliveryState, Notification
from backoffice.models.provider import (
    CODED_LISTS,
    Accreditation,
    AdvertisingStatus,
    Licence,
    ListingStatus,
    Location,
    Principal,
    PrincipalRole,
    Provider,
    ProviderCode,
    VerificationAction,
    VerificationActionKind,
    VerificationActionState,
    VerificationStatus,
)
from backoffice.models.source import DataSource, FieldConfirmation
from backoffice.models.staff_notice import NoticeMode, StaffDigestItem, StaffNoticePreference
from backoffice.models.submission import (
    OPEN_PREDICATE,
    OPEN_STATES,
    AdvertisingCopy,
    Assessment,
    AssessmentStatus,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    Document,
    MessageKind,
    Reverification,
    ReverificationCause,
    Submission,
    SubmissionKind,
    SubmissionMessage,
    SubmissionProposedCity,
    SubmissionProposedState,
    SubmissionState,
    SubmissionTransition,
)
from backoffice.models.work import OPEN_WORK_STATES, Work, WorkKind, WorkState

__all__ = [name for name in dir() if not name.startswith("_")]
