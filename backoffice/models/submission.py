"""Listing requests, their documents and messages, assessments per criterion, and decisions."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow

if TYPE_CHECKING:  # named in annotations only; relationship() finds the classes through the registry
    from backoffice.models.account import Account
    from backoffice.models.criteria import CriteriaCatalogue, Criterion
    from backoffice.models.provider import Provider


class SubmissionKind(StrEnum):
    NEW_LISTING = "new_listing"
    UPDATE = "update"
    ADVERTISER_APPLICATION = "advertiser_application"
    REINSTATEMENT = "reinstatement"
    # Opened by the system before verified_until (or when a new catalogue version asks more of the provider):
    # the provider confirms or updates its listing, the research team reviews it like an update.
    REVERIFICATION = "reverification"

    @property
    def label(self) -> str:
        return "re-verification" if self is SubmissionKind.REVERIFICATION else super().label


class SubmissionState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    NEEDS_INFO = "needs_info"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


OPEN_STATES = frozenset(
    {SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO}
)
# The same, written as the partial indexes' predicate: a query repeats it word for word to use them.
OPEN_PREDICATE = "state IN ('submitted', 'in_review', 'needs_info')"


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (
        Index("ix_submission_state_decision_due", "state", "decision_due"),
        Index("ix_submission_assignee_state", "assignee_id", "state"),
        # The queue sorted by age or by latest activity reads the open requests in that order from these,
        # partial so the decided ones (most of the table) are not in them.
        Index("ix_submission_open_submitted", "submitted_at", "id",
              sqlite_where=text(OPEN_PREDICATE), postgresql_where=text(OPEN_PREDICATE)),
        Index("ix_submission_open_activity", "updated_at", "id",
              sqlite_where=text(OPEN_PREDICATE), postgresql_where=text(OPEN_PREDICATE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    kind: Mapped[SubmissionKind] = mapped_column(enum_type(SubmissionKind, "submission_kind"))
    state: Mapped[SubmissionState] = mapped_column(
        enum_type(SubmissionState, "submission_state"), default=SubmissionState.DRAFT
    )
    # The listing data the provider proposes, in the shape of the provider profile.
    proposed: Mapped[dict] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The criteria catalogue the review works under, fixed when review starts.
    catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("criteria_catalogue.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    provider: Mapped["Provider"] = relationship()
    catalogue: Mapped["CriteriaCatalogue | None"] = relationship()
    assignee: Mapped["Account | None"] = relationship(foreign_keys=[assignee_id])
    created_by: Mapped["Account | None"] = relationship(foreign_keys=[created_by_id])
    transitions: Mapped[list[SubmissionTransition]] = relationship(
        back_populates="submission", order_by="SubmissionTransition.id"
    )
    assessments: Mapped[list[Assessment]] = relationship(back_populates="submission")
    decisions: Mapped[list[Decision]] = relationship(back_populates="submission", order_by="Decision.id")
    messages: Mapped[list[SubmissionMessage]] = relationship(order_by="SubmissionMessage.id")
    documents: Mapped[list[Document]] = relationship(order_by="Document.id")
    # Written only by services.submissions.propose, with `proposed`.
    proposed_cities: Mapped[list[SubmissionProposedCity]] = relationship(cascade="all, delete-orphan")
    proposed_states: Mapped[list[SubmissionProposedState]] = relationship(
        cascade="all, delete-orphan", order_by="SubmissionProposedState.state"
    )

    __mapper_args__ = {"version_id_col": row_version}

    def __str__(self) -> str:
        return f"#{self.id} {self.kind.label}"


class SubmissionProposedState(Base):
    """A US state of a location the request proposes, kept beside it so the review queue shows and finds a
    request under the states it would list in before approval (a new provider has no location of its own)."""

    __tablename__ = "submission_proposed_state"
    __table_args__ = (Index("ix_submission_proposed_state_state_submission", "state", "submission_id"),)

    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(2), primary_key=True)


class SubmissionProposedCity(Base):
    """A city of a location the request proposes (lower case), kept beside it so the queue finds a new listing
    by its city before approval, from an index instead of reading every request's proposal."""

    __tablename__ = "submission_proposed_city"
    __table_args__ = (Index("ix_submission_proposed_city_city_submission", "city", "submission_id"),)

    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), primary_key=True)
    city: Mapped[str] = mapped_column(String(100), primary_key=True)


class SubmissionTransition(Base):
    """One step of a submission's state machine: the provider's timeline."""

    __tablename__ = "submission_transition"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    from_state: Mapped[SubmissionState | None] = mapped_column(
        enum_type(SubmissionState, "transition_from_state")
    )
    to_state: Mapped[SubmissionState] = mapped_column(enum_type(SubmissionState, "transition_to_state"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))

    submission: Mapped[Submission] = relationship(back_populates="transitions")


class MessageKind(StrEnum):
    INFO_REQUEST = "info_request"
    PROVIDER_ANSWER = "provider_answer"


class SubmissionMessage(Base):
    __tablename__ = "submission_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    kind: Mapped[MessageKind] = mapped_column(enum_type(MessageKind, "message_kind"))
    author_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Document(Base):
    """An uploaded evidence file; the bytes live in the upload store under storage_key."""

    __tablename__ = "document"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id"), index=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssessmentStatus(StrEnum):
    PENDING = "pending"
    MET = "met"
    NOT_MET = "not_met"
    NOT_APPLICABLE = "not_applicable"


class Assessment(Base):
    __tablename__ = "assessment"
    __table_args__ = (UniqueConstraint("submission_id", "criterion_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    criterion_id: Mapped[int] = mapped_column(ForeignKey("criterion.id"))
    status: Mapped[AssessmentStatus] = mapped_column(
        enum_type(AssessmentStatus, "assessment_status"), default=AssessmentStatus.PENDING
    )
    note: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(500))
    document_id: Mapped[int | None] = mapped_column(ForeignKey("document.id"))
    check_run_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"))
    check_snapshot: Mapped[dict | None] = mapped_column(JSON)
    # The assessment of the decision in force this one was carried over from. A carried-over assessment has no
    # assessed_by/assessed_at until a researcher confirms or changes it: it never counts until then.
    carried_from_id: Mapped[int | None] = mapped_column(ForeignKey("assessment.id"))
    assessed_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    submission: Mapped[Submission] = relationship(back_populates="assessments")
    criterion: Mapped["Criterion"] = relationship()
    carried_from: Mapped["Assessment | None"] = relationship(remote_side="Assessment.id")

    __mapper_args__ = {"version_id_col": row_version}


class ReverificationCause(StrEnum):
    DUE = "due"  # verified_until comes near
    CRITERIA = "criteria"  # a new catalogue version asks what the provider's file does not show

    @property
    def label(self) -> str:
        return {"due": "verification ends soon", "criteria": "the criteria changed"}[self.value]


class Reverification(Base):
    """Why a re-verification request was opened, by when the provider must answer, and which verification period
    it renews: the sweep opens one per period (renews_until), a criteria change one per version (catalogue_id)."""

    __tablename__ = "reverification"
    __table_args__ = (Index("ix_reverification_provider_renews", "provider_id", "renews_until"),)

    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    cause: Mapped[ReverificationCause] = mapped_column(enum_type(ReverificationCause, "reverification_cause"))
    # In words, as the provider reads it in the mail and on the request's page.
    reason: Mapped[str] = mapped_column(Text)
    respond_by: Mapped[datetime] = mapped_column(UTCDateTime)
    # The provider's verified_until when it was opened: the period this request renews.
    renews_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The catalogue version whose publication scheduled it (a criteria change), else None.
    catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("criteria_catalogue.id"), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship()
    catalogue: Mapped["CriteriaCatalogue | None"] = relationship()


class AdvertisingCopy(Base):
    """The advertising an advertiser application asks to run: what the research team reviews against
    ADVERTISER_STANDARDS, and, once approved, what the feed's advertiser disclosure describes."""

    __tablename__ = "advertising_copy"
    __table_args__ = (Index("ix_advertising_copy_provider_approved", "provider_id", "approved_at"),)

    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    headline: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    # The factual claims the copy makes, one per entry, each of which the research team checks.
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    landing_url: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set when the application is approved (and signed off): from then on this is the copy in force.
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    submission: Mapped[Submission] = relationship()


class DecisionOutcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class DecisionStatus(StrEnum):
    AWAITING_SIGNOFF = "awaiting_signoff"
    FINAL = "final"
    DECLINED = "declined"


class Decision(Base):
    """A research decision; where a second sign-off is required it takes effect only once signed off."""

    __tablename__ = "decision"
    # The research leads' "waiting for my sign-off": the few decisions in that state, whatever the history.
    __table_args__ = (Index("ix_decision_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    outcome: Mapped[DecisionOutcome] = mapped_column(enum_type(DecisionOutcome, "decision_outcome"))
    status: Mapped[DecisionStatus] = mapped_column(enum_type(DecisionStatus, "decision_status"))
    reason_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    provider_note: Mapped[str | None] = mapped_column(Text)
    internal_note: Mapped[str | None] = mapped_column(Text)
    catalogue_id: Mapped[int] = mapped_column(ForeignKey("criteria_catalogue.id"))
    decided_by_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    second_signoff_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    second_signoff_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declined_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decline_reason: Mapped[str | None] = mapped_column(Text)
    verified_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    submission: Mapped[Submission] = relationship(back_populates="decisions")
    catalogue: Mapped["CriteriaCatalogue"] = relationship()
    decided_by: Mapped["Account"] = relationship(foreign_keys=[decided_by_id])
    second_signoff_by: Mapped["Account | None"] = relationship(foreign_keys=[second_signoff_by_id])
