"""audit chain head kept and guarded; active advertisers must be verified

Revision ID: 568633cca1e4
Revises: 88cf526fb529
Create Date: 2026-11-26 14:58:26.944844

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '568633cca1e4'
down_revision = '88cf526fb529'
branch_labels = None
depends_on = None


GENESIS_HASH = "0" * 64
HEAD_GUARD = "audit_chain_lock keeps the chain head: it cannot be deleted or moved back"


def upgrade():
    with op.batch_alter_table('audit_chain_lock', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('head_hash', sa.String(length=64), nullable=False,
                                      server_default=GENESIS_HASH))
    # The head is where the chain ends today.
    op.execute("""
        UPDATE audit_chain_lock SET
            head_seq = COALESCE((SELECT MAX(seq) FROM audit_event), 0),
            head_hash = COALESCE((SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1), '%s')
        WHERE id = 1
    """ % GENESIS_HASH)
    with op.batch_alter_table('audit_chain_lock', schema=None) as batch_op:
        batch_op.alter_column('head_seq', server_default=None)
        batch_op.alter_column('head_hash', server_default=None)
    create_head_guards()

    bind = op.get_bind()
    offenders = [row[0] for row in bind.execute(sa.text(
        "SELECT id FROM provider WHERE advertising_status = 'active' AND verification_status != 'verified'"))]
    if offenders:
        raise RuntimeError(
            "These providers advertise without a current verification; suspend their advertising through the "
            f"back-office before upgrading: {offenders[:50]}")
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.create_check_constraint(
            'advertiser_is_verified', "advertising_status != 'active' OR verification_status = 'verified'")


def downgrade():
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_provider_advertiser_is_verified'), type_='check')
    drop_head_guards()
    with op.batch_alter_table('audit_chain_lock', schema=None) as batch_op:
        batch_op.drop_column('head_hash')
        batch_op.drop_column('head_seq')


def create_head_guards():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_chain_lock_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{HEAD_GUARD}' USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
        op.execute("""
            CREATE TRIGGER audit_chain_lock_no_rewind BEFORE UPDATE ON audit_chain_lock
            FOR EACH ROW WHEN (NEW.head_seq < OLD.head_seq) EXECUTE FUNCTION audit_chain_lock_refuse()
        """)
        op.execute("""
            CREATE TRIGGER audit_chain_lock_no_delete BEFORE DELETE ON audit_chain_lock
            FOR EACH ROW EXECUTE FUNCTION audit_chain_lock_refuse()
        """)
        op.execute("""
            CREATE TRIGGER audit_chain_lock_no_truncate BEFORE TRUNCATE ON audit_chain_lock
            FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_lock_refuse()
        """)
    else:
        op.execute(f"""
            CREATE TRIGGER audit_chain_lock_no_rewind BEFORE UPDATE ON audit_chain_lock
            WHEN NEW.head_seq < OLD.head_seq BEGIN SELECT RAISE(ABORT, '{HEAD_GUARD}'); END
        """)
        op.execute(f"""
            CREATE TRIGGER audit_chain_lock_no_delete BEFORE DELETE ON audit_chain_lock
            BEGIN SELECT RAISE(ABORT, '{HEAD_GUARD}'); END
        """)


def drop_head_guards():
    if op.get_bind().dialect.name == "postgresql":
        for name in ("audit_chain_lock_no_rewind", "audit_chain_lock_no_delete", "audit_chain_lock_no_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON audit_chain_lock")
        op.execute("DROP FUNCTION IF EXISTS audit_chain_lock_refuse()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_chain_lock_no_rewind")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_lock_no_delete")
