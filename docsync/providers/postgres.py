"""``PostgresProvider``: the ORM provider's tables, one round trip per sync.

An :class:`~docsync.providers.orm.ORMProvider` made for PostgreSQL (psycopg
3). It keeps documents in the same ``Document`` / ``OperationBatch`` rows,
so the admin, the management commands and the default permissions work
unchanged, and every other use (squashing, deleting, the admin) goes through
the ORM provider's transactions. A sync is answered in one statement instead
(:meth:`PostgresProvider.sync_step`):

* A sync with operations calls the server-side function ``docsync_sync_v8``:
  it locks the document's row, reads the batches the client lacks, appends
  the new batch and advances the clock in one round trip, one transaction
  and one commit. Each of its statements sees what committed before it (a
  PL/pgSQL function takes a new snapshot per statement), so a writer that
  waited for the row lock reads the batch it waited for.
  It also remembers what the client stored (``docsync_clientcommit``), and
  leaves a possible resend of the client's last stored operations
  (``docsync.sync``) to the ORM path.
* A sync without operations (a pull) takes no lock: one ``SELECT`` reads the
  document and the log tail in one snapshot, so a burst of pulls after a
  ``dirty`` never queues behind writers, and writers never wait for readers.

Writes to different documents that arrive while another write is running
share one transaction and one commit (*group commit*,
:mod:`docsync.providers.groupcommit`): one thread runs them all with one call
of ``docsync_sync_group_v6`` (the same function on each, documents in a fixed
order so that two groups never deadlock), and each waiting sync is answered
after that commit only. A group the database refuses is rolled back whole
and its syncs run again one by one, so one failing sync fails alone.

Both statements are prepared, on each thread's Django connection (no
per-request health check). The rare cases (the first snapshot a client
sends, a document created with a snapshot) take the ORM transaction path.
The function is installed by the provider on first use (``CREATE OR
REPLACE`` under an advisory lock), so the database user needs the right to
create functions, as it has to run migrations. Rows written this way send no
model signals, like the ORM's bulk operations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from .. import changes
from ..exceptions import StorageError, StorageUnavailable
from ..hops import hop
from ..models import WRITE_ROLES, decode_operations, decode_snapshot, encode_operations
from ..outage import StorageOutage, connection_lost
from ..utils import user_pk
from .base import Batch, DocRecord, Mode, Origin, SyncStep, prefix_digests
from .groupcommit import AsyncGroupCommit, GroupCommit, Outcome
from .orm import ORMProvider, ORMTransaction
from .pgasync import LoopConnections
from .tail import Tails

logger = logging.getLogger(__name__)

FUNCTION = "docsync_sync_v8"

#: psycopg's prepare_threshold on Django's connections: only prepare=True prepares.
NEVER_AUTOMATICALLY = 2**31 - 1

#: Requests with more operations than this send no prefix digests: a possible
#: resend of theirs is left to the ORM path.
MAX_PREFIX_DIGESTS = 64

# Changing this text needs a new FUNCTION name (processes of the old version
# keep calling theirs while a deployment rolls over).
#
# plan_cache_mode: PL/pgSQL caches each statement's plan, but with the default
# ("auto") PostgreSQL keeps planning statements like the grant check afresh
# on every call (a plan for the given parameters folds ``p_rule = 'share'``
# away, so it always looks cheaper than the generic one): measured, a quarter
# of the backend's CPU per write. Generic plans are planned once per
# connection; every statement here is an index lookup whatever its parameters.
FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION {function}(
    p_doc_id text, p_doc_type text, p_clock bigint, p_has_doc boolean,
    p_fmt text, p_ops bytea, p_user text, p_device text, p_client text, p_expect_new boolean,
    p_owner text, p_count integer, p_digest text, p_prefixes text[], p_rule text,
    p_roles text[], p_known bigint, p_upto bigint)
RETURNS TABLE (kind text, clock bigint, fmt text, data bytea, doc_type text,
               snapshot_clock bigint, owner_id text, deleted boolean, send boolean,
               created boolean)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    d record;
    v_created boolean := false;
    v_lapsed boolean := false;
    v_user {user_pk_type};
    v_send boolean;
    v_base bigint;
    v_clock bigint;
BEGIN
    -- Each statement costs its executor set-up (most of this function's CPU):
    -- the row, the user and the client's last commit are read in one, the
    -- three writes are one, the batches and the record are returned in one.
    {lock_document};
    IF NOT FOUND AND p_rule IS NOT NULL THEN  -- allowed by a share or as open: judged again
        RETURN QUERY SELECT 'lapsed'::text, NULL::bigint, NULL::text, NULL::bytea,
            NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, true;
        RETURN;
    END IF;
    IF NOT FOUND AND p_owner IS NOT NULL THEN  -- allowed as its owner: judged again
        RETURN QUERY SELECT 'refused'::text, NULL::bigint, NULL::text, NULL::bytea,
            NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, true;
        RETURN;
    END IF;
    IF NOT FOUND THEN
        IF p_has_doc THEN  -- created with a snapshot: the ORM path stores it
            RETURN QUERY SELECT 'fallback'::text, NULL::bigint, NULL::text, NULL::bytea,
                NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean;
            RETURN;
        END IF;
        -- Concurrent creators wait here for the winner, then lock its row.
        INSERT INTO docsync_document (doc_id, doc_type, snapshot, snapshot_format, snapshot_clock,
            latest_clock, created_at, updated_at, deleted_at, squash_error, owner_id, private)
        VALUES (p_doc_id, p_doc_type, NULL, '', 0, 0, now(), now(), NULL, '',
            (SELECT u.{user_pk} FROM {user_table} u WHERE u.{user_pk} = p_user::{user_pk_type}),
            false)
        ON CONFLICT (doc_id) DO NOTHING;
        v_created := FOUND;
        {lock_document};
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'fallback'::text, NULL::bigint, NULL::text, NULL::bytea,
                NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean;
            RETURN;
        END IF;
    END IF;
    v_user := d.user_pk;
    -- The refusals of docsync.sync: nothing is written, the caller raises.
    IF (p_expect_new AND NOT v_created) OR d.deleted_at IS NOT NULL
            OR (d.doc_type <> '' AND d.doc_type <> p_doc_type)
            OR (p_owner IS NOT NULL AND d.owner_id::text IS DISTINCT FROM p_owner) THEN
        RETURN QUERY SELECT 'refused'::text, d.latest_clock, d.snapshot_format::text, NULL::bytea,
            d.doc_type::text, d.snapshot_clock, d.owner_id::text, d.deleted_at IS NOT NULL, false,
            v_created;
        RETURN;
    END IF;
    -- The grant the write was allowed by (docsync.permissions), on the locked row:
    -- a share to the user or a group of theirs with a role in p_roles, or a
    -- document still shared with nobody (OPEN_DOCUMENTS).
    IF p_rule = 'share' THEN
        v_lapsed := NOT EXISTS (
            SELECT 1 FROM docsync_documentshare s
             WHERE s.document_id = d.id AND s.role = ANY (p_roles)
               AND (s.user_id = v_user{group_clause}));
    ELSIF p_rule = 'open' THEN
        v_lapsed := d.private OR EXISTS (
            SELECT 1 FROM docsync_documentshare s WHERE s.document_id = d.id);
    END IF;
    IF v_lapsed THEN
        RETURN QUERY SELECT 'lapsed'::text, d.latest_clock, d.snapshot_format::text, NULL::bytea,
            d.doc_type::text, d.snapshot_clock, d.owner_id::text, false, false, v_created;
        RETURN;
    END IF;
    IF d.snapshot_format = '' AND p_has_doc THEN  -- the client's first snapshot
        RETURN QUERY SELECT 'fallback'::text, NULL::bigint, NULL::text, NULL::bytea,
            NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean;
        RETURN;
    END IF;
    -- A resend of the client's last stored operations (docsync.sync): the ORM path.
    IF d.cc_clocks IS NOT NULL AND split_part(d.cc_clocks, ' ', 1)::bigint > p_clock
            AND (p_prefixes IS NULL OR (d.cc_count <= cardinality(p_prefixes)
                                        AND p_prefixes[d.cc_count] = d.cc_digest)) THEN
        RETURN QUERY SELECT 'fallback'::text, NULL::bigint, NULL::text, NULL::bytea,
            NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean;
        RETURN;
    END IF;
    v_send := d.snapshot_format <> '' AND (NOT p_has_doc OR d.snapshot_clock > p_clock);
    v_base := CASE WHEN v_send THEN d.snapshot_clock ELSE p_clock END;
    -- Batches (p_clock, p_known] the caller holds already (its tail): not read;
    -- nor those after p_upto (written by the caller's group, which holds them).
    IF NOT v_send AND p_known > v_base THEN
        v_base := least(p_known, d.latest_clock);
    END IF;
    v_clock := d.latest_clock + 1;
    -- The batch, the clock, and what the client stored (for its resend).
    WITH batch AS (
        INSERT INTO docsync_operationbatch (document_id, clock, operations, operations_format,
            user_id, device_id, client_id, created_at)
        VALUES (d.id, v_clock, p_ops, p_fmt, v_user, coalesce(p_device, ''),
            coalesce(p_client, ''), now())
    ), advanced AS (
        UPDATE docsync_document SET latest_clock = v_clock, updated_at = now() WHERE id = d.id
    )
    INSERT INTO docsync_clientcommit (document_id, client_id, clocks, count, digest, updated_at)
    SELECT d.id, p_client, v_clock::text, p_count, p_digest, now()
     WHERE coalesce(p_client, '') <> ''
    ON CONFLICT (document_id, client_id) DO UPDATE SET clocks = EXCLUDED.clocks,
        count = EXCLUDED.count, digest = EXCLUDED.digest, updated_at = EXCLUDED.updated_at;
    -- The batches the client lacks (not this sync's), then the record as it
    -- was before this sync's batch (clock: its latest_clock).
    RETURN QUERY SELECT 'batch'::text, b.clock, b.operations_format::text, b.operations,
            NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean
        FROM docsync_operationbatch b
        WHERE b.document_id = d.id AND b.clock > v_base AND b.clock < v_clock
          AND (p_upto IS NULL OR b.clock <= p_upto)
    UNION ALL
    SELECT 'doc'::text, d.latest_clock, d.snapshot_format::text,
        CASE WHEN v_send THEN (SELECT t.snapshot FROM docsync_document t WHERE t.id = d.id) END,
        d.doc_type::text, d.snapshot_clock, d.owner_id::text, false, v_send, v_created
    ORDER BY 1, 2;
END
$fn$
"""

# The document's row (locked), the user and what the client stored last.
LOCK_DOCUMENT_SQL = """SELECT t.id, t.doc_type, t.snapshot_clock, t.latest_clock, t.deleted_at,
           t.snapshot_format, t.owner_id, t.private,
           (SELECT u.{user_pk} FROM {user_table} u
             WHERE u.{user_pk} = p_user::{user_pk_type}) AS user_pk,
           cc.clocks AS cc_clocks, cc.count AS cc_count, cc.digest AS cc_digest
      INTO d FROM docsync_document t
      LEFT JOIN docsync_clientcommit cc
        ON cc.document_id = t.id AND cc.client_id = p_client AND coalesce(p_client, '') <> ''
     WHERE t.doc_id = p_doc_id FOR UPDATE OF t"""

GROUP_FUNCTION = "docsync_sync_group_v6"

# The syncs of a group, in the order given (same documents next to each
# other), in the caller's one transaction. Each sync's statements take their
# own snapshots, so a sync sees what the ones before it in the group wrote;
# it does not read those batches, though (the caller holds them): the first
# of several writes of one document locks its row and notes its clock
# (v_upto), and what comes after that clock is this group's own. p_prefixes:
# each sync's prefix digests joined by spaces (arrays of arrays must be
# rectangular).
GROUP_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION {group_function}(
    p_doc_ids text[], p_doc_types text[], p_clocks bigint[], p_has_docs boolean[],
    p_fmts text[], p_ops bytea[], p_users text[], p_devices text[], p_clients text[],
    p_expect_new boolean[], p_owners text[], p_counts integer[], p_digests text[],
    p_prefixes text[], p_rules text[], p_roles text[], p_knowns bigint[])
RETURNS TABLE (item integer, kind text, clock bigint, fmt text, data bytea, doc_type text,
               snapshot_clock bigint, owner_id text, deleted boolean, send boolean,
               created boolean)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    v_doc text;
    v_upto bigint;
BEGIN
    FOR i IN 1 .. cardinality(p_doc_ids) LOOP
        IF v_doc IS DISTINCT FROM p_doc_ids[i] THEN
            v_doc := p_doc_ids[i];
            v_upto := NULL;
            IF i < cardinality(p_doc_ids) AND p_doc_ids[i + 1] = v_doc THEN
                SELECT t.latest_clock INTO v_upto FROM docsync_document t
                 WHERE t.doc_id = v_doc FOR UPDATE;
            END IF;
        END IF;
        RETURN QUERY SELECT i, s.* FROM {function}(p_doc_ids[i], p_doc_types[i], p_clocks[i],
            p_has_docs[i], p_fmts[i], p_ops[i], p_users[i], p_devices[i], p_clients[i],
            p_expect_new[i], p_owners[i], p_counts[i], p_digests[i],
            string_to_array(p_prefixes[i], ' '), p_rules[i], string_to_array(p_roles[i], ' '),
            p_knowns[i], v_upto) s;
    END LOOP;
END
$fn$
"""

# Binary parameters (%b): psycopg dumps lists as binary arrays about five
# times faster than as text (a group of 50: 0.4 ms instead of 2), and the
# server need not parse them.
GROUP_SQL = (
    f"SELECT * FROM {GROUP_FUNCTION}("
    "%b::text[], %b::text[], %b::bigint[], %b::boolean[], %b::text[], %b::bytea[], "
    "%b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[], %b::integer[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[])"
)

WRITE_SQL = (
    f"SELECT * FROM {FUNCTION}("
    "%s::text, %s::text, %s::bigint, %s::boolean, %s::text, %s::bytea, %s::text, %s::text, "
    "%s::text, %s::boolean, %s::text, %s::integer, %s::text, %s::text[], %s::text, %s::text[], "
    "%s::bigint, NULL)"
)

# One statement, one snapshot, no lock: the record and the log tail agree.
READ_SQL = """
WITH d AS (
    SELECT t.id, t.doc_type, t.snapshot_clock, t.latest_clock, t.deleted_at, t.snapshot_format,
           t.owner_id, t.snapshot_format <> '' AND (NOT %(has_doc)s::boolean
                                                   OR t.snapshot_clock > %(clock)s::bigint) AS send
      FROM docsync_document t WHERE t.doc_id = %(doc_id)s::text
)
SELECT 'doc'::text, d.latest_clock, d.snapshot_format::text,
       CASE WHEN d.send THEN (SELECT t.snapshot FROM docsync_document t WHERE t.id = d.id) END,
       d.doc_type::text, d.snapshot_clock, d.owner_id::text, d.deleted_at IS NOT NULL, d.send,
       false
  FROM d
UNION ALL
SELECT 'batch'::text, b.clock, b.operations_format::text, b.operations,
       NULL::text, NULL::bigint, NULL::text, NULL::boolean, NULL::boolean, NULL::boolean
  FROM d JOIN docsync_operationbatch b ON b.document_id = d.id
 WHERE b.clock > CASE WHEN d.send THEN d.snapshot_clock ELSE %(clock)s::bigint END
"""


Rows = list[tuple[Any, ...]]

#: The share roles that allow writing (a ``("share", pk)`` grant is checked against them).
_WRITE_ROLES = sorted(WRITE_ROLES)


class _Write:
    """One write of a group: its request, the function's parameters but the
    last (``p_known``: the tail's, taken when the group starts)."""

    __slots__ = ("held", "owner", "params", "req")

    def __init__(self, req: Any, params: tuple[Any, ...], owner: str | None) -> None:
        self.req = req
        self.params = params
        self.owner = owner
        #: The batches after the client's clock the tail held when the group started.
        self.held: list[Batch] = []

    def statement_params(self) -> tuple[Any, ...]:
        return (*self.params, self.held[-1].clock if self.held else None)


def _group_columns(group: Sequence[tuple[Any, ...]]) -> tuple[list[int], list[list[Any]]]:
    """The group's order (by document id: groups never deadlock; a document's
    writes keep their order) and its parameter arrays."""
    order = sorted(range(len(group)), key=lambda i: group[i][0])
    columns = [list(column) for column in zip(*(group[i] for i in order), strict=True)]
    for column in (-4, -2):  # arrays of arrays must be rectangular: joined
        columns[column] = [None if p is None else " ".join(p) for p in columns[column]]
    return order, columns


def _split_rows(rows: Rows, order: list[int], size: int) -> list[Rows]:
    """The group function's rows, per item of the group as it was submitted."""
    per_item: list[Rows] = [[] for _ in range(size)]
    for item, *row in rows:
        per_item[order[item - 1]].append(tuple(row))
    return per_item


def _with_before(read: list[Batch], before: list[Batch], base: int, latest: int) -> list[Batch]:
    """What the function ``read`` and the batches of the group's earlier
    writes (``before``, not read again) in ``(base, latest]``, by clock; a
    clock read wins (a write that ran alone after its group failed reads them)."""
    clocks = {b.clock for b in read}
    extra = [b for b in before if base < b.clock <= latest and b.clock not in clocks]
    return sorted(read + extra, key=lambda batch: batch.clock) if extra else read


def _joined(held: list[Batch], read: list[Batch], clock: int, latest: int) -> list[Batch]:
    """The batches ``(clock, latest]`` of a write's answer: ``held`` (the
    tail's, which the function was told not to read), then what it ``read``.

    Raises ``StorageError`` if they do not join up exactly (never expected:
    the write is committed but not acknowledged, so the client sends it
    again, and that resend is answered by the ORM path).
    """
    run = [b for b in held if b.clock <= latest] + read
    if len(run) != max(latest - clock, 0) or any(
        b.clock != clock + 1 + i for i, b in enumerate(run)
    ):
        logger.error("docsync: a write's batches do not join its tail; not acknowledged")
        raise StorageError()
    return run


def _group_clause(model: Any, quote: Any) -> str:
    """SQL: the share's group is one of ``v_user``'s (nothing when users have no groups)."""
    try:
        field = model._meta.get_field("groups")
    except Exception:  # noqa: BLE001  (a custom user model without groups)
        return ""
    through = field.remote_field.through._meta
    user_column = through.get_field(field.m2m_field_name()).column
    group_column = through.get_field(field.m2m_reverse_field_name()).column
    return (
        f" OR s.group_id IN (SELECT ug.{quote(group_column)} FROM {quote(through.db_table)} ug"
        f" WHERE ug.{quote(user_column)} = v_user)"
    )


class PostgresProvider(ORMProvider):
    """``ORMProvider`` on PostgreSQL, each sync in one prepared statement.

    Options: ``using``, the database alias (default ``"default"``), which
    must be a PostgreSQL database (psycopg 3); ``group_commit``, the most
    writes one transaction may hold (default 128; 1 commits each on its own).
    """

    unlocked_reads = True
    verified_grants = frozenset({"owner", "share", "open"})
    #: A write is atomic in the database (one statement under the row lock):
    #: the server need not queue the writes of one document (``sync_write``).
    atomic_writes = True

    def __init__(
        self,
        *,
        group_commit: int = 128,
        tail_documents: int = 1000,
        loop_connection: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        for name, value, least in (
            ("group_commit", group_commit, 1),
            ("tail_documents", tail_documents, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ImproperlyConfigured(
                    f"PostgresProvider's {name} must be a whole number of at least {least}, "
                    f"not {value!r}."
                )
        if not isinstance(loop_connection, bool):
            raise ImproperlyConfigured(
                "PostgresProvider's loop_connection must be True or False, "
                f"not {loop_connection!r}."
            )
        self.group_commit = group_commit
        #: The newest batches of the documents being worked on (``docsync.providers.tail``).
        self.tails = Tails(max_docs=tail_documents) if tail_documents else None
        self._groups: GroupCommit[_Write, SyncStep | None] = GroupCommit(
            self._run_group, group_commit
        )
        self._async_groups: AsyncGroupCommit[_Write, SyncStep | None] = AsyncGroupCommit(
            self._run_group_async, group_commit
        )
        #: Group commits from the event loop run on its own connection (no thread hop).
        self._async: LoopConnections | None = (
            LoopConnections(self.using, NEVER_AUTOMATICALLY) if loop_connection else None
        )
        self._ready: set[str] = set()
        self._installed: set[str] = set()
        self._install_lock = threading.Lock()
        self._users: dict[str, str | None] = {}

    # -- the one-statement sync -------------------------------------------

    def sync_step(
        self,
        req: Any,
        origin: Origin,
        *,
        expect_new: bool = False,
        owner: str | None = None,
        grant: tuple[str, str] | None = None,
    ) -> SyncStep | None:
        has_doc = req.serialized_doc is not None
        if req.operations:
            write = _Write(req, self._write_params(req, origin, expect_new, owner, grant), owner)
            return self._write(write)
        pull = {"doc_id": req.doc_id, "clock": req.clock, "has_doc": has_doc}
        return self._step(self._execute(READ_SQL, pull, req.doc_id), req, has_doc, owner)

    async def sync_write(
        self,
        req: Any,
        origin: Origin,
        *,
        owner: str | None = None,
        grant: tuple[str, str] | None = None,
    ) -> SyncStep | None:
        """:meth:`sync_step` of a write, from the event loop (``atomic_writes``).

        The write joins the event loop's next group (:class:`AsyncGroupCommit`):
        the syncs that arrive while a group commits share the next
        transaction, one thread hop and one commit, whichever documents they
        write (two writes of one document run in arrival order, the second
        reading the first's batch). ``None``: leave it to :meth:`transaction`.
        """
        write = _Write(req, self._write_params(req, origin, False, owner, grant), owner)
        return await self._async_groups.submit(write)

    def _started(self, group: Sequence[_Write]) -> None:
        """A group starts: each write's batches that this process holds (its
        tail, gap-free after the client's clock), as late as possible, so that
        the previous group's are among them and are not read again."""
        if self.tails is not None:
            for write in group:
                write.held = self.tails.after(write.req.doc_id, write.req.clock)

    def _write_params(
        self,
        req: Any,
        origin: Origin,
        expect_new: bool,
        owner: str | None,
        grant: tuple[str, str] | None,
    ) -> tuple[Any, ...]:
        fmt, data = encode_operations(req.operations)
        prefixes = prefix_digests(req.operations)
        return (
            req.doc_id,
            req.doc_type,
            req.clock,
            req.serialized_doc is not None,
            fmt,
            data,
            self._user_pk(origin.user_id),
            origin.device_id,
            origin.client_id,
            expect_new,
            owner,
            len(req.operations),
            prefixes[-1],
            prefixes if len(prefixes) <= MAX_PREFIX_DIGESTS else None,
            None if grant is None else grant[0],
            _WRITE_ROLES if grant is not None and grant[0] == "share" else None,
        )

    def _step(
        self,
        rows: list[tuple[Any, ...]],
        req: Any,
        has_doc: bool,
        owner: str | None,
        held: list[Batch] | None = None,
        before: list[Batch] | None = None,
    ) -> SyncStep | None:
        header, batches = None, []
        for kind, clock, fmt, data, *info in rows:
            if kind == "batch":
                batches.append(Batch(clock, decode_operations(fmt, data)))
            elif kind == "fallback":
                return None
            elif kind == "lapsed":
                return SyncStep(record=None, clock=0, refused=True, lapsed=True)
            else:
                header = (kind, clock, fmt, data, *info)
        if header is None:  # a pull of a missing document
            if owner is not None:
                return SyncStep(record=None, clock=0, refused=True)
            return None if has_doc else SyncStep(record=None, clock=0)
        kind, latest, fmt, data, doc_type, snapshot_clock, owner_id, deleted, send, created = header
        record = None
        if not created:
            record = DocRecord(
                doc_id=req.doc_id,
                doc_type=doc_type,
                serialized_doc=None,
                clock=snapshot_clock,
                latest_clock=latest,
                deleted=bool(deleted),
                owner_id=owner_id,
                has_snapshot=bool(fmt),
            )
        if kind == "refused":
            return SyncStep(record=record, clock=latest, refused=True)
        if not req.operations:  # a pull: the function's refusals, checked here
            if deleted or (doc_type and doc_type != req.doc_type) or owner not in (None, owner_id):
                return SyncStep(record=record, clock=latest, refused=True)
            if has_doc and not fmt:
                return None  # the client's first snapshot is stored by the ORM path
        batches.sort(key=lambda batch: batch.clock)  # UNION ALL keeps no order
        if before:
            base = snapshot_clock if send else max(req.clock, held[-1].clock if held else 0)
            batches = _with_before(batches, before, base, latest)
        if held and not send:
            batches = _joined(held, batches, req.clock, latest)
        snapshot = decode_snapshot(fmt, data) if send else None
        clock = latest + 1 if req.operations else latest
        if self.tails is not None and record is not None:
            own = Batch(clock, list(req.operations)) if req.operations else None
            self.tails.learned(
                req.doc_id, record, snapshot_clock if send else req.clock, batches, own
            )
        return SyncStep(record=record, clock=clock, batches=batches, snapshot=snapshot)

    # -- the tails of busy documents (docsync.providers.tail) -------------------

    def cached_pull(self, req: Any) -> SyncStep | None:
        """:meth:`sync_step` of a pull answered from memory, or ``None``: ask :meth:`sync_step`.

        No I/O: the event loop may call it.
        """
        if self.tails is None:
            return None
        return self.tails.pull(req.doc_id, req.doc_type, req.clock, req.serialized_doc is not None)

    def heard(self, doc_id: str, clock: int | None) -> None:
        """A ``dirty`` said ``doc_id`` reached ``clock`` (``None``: changed somehow)."""
        if self.tails is not None:
            self.tails.heard(doc_id, clock)

    @contextmanager
    def transaction(
        self, mode: Mode, doc_id: str, *, doc_type: str | None = None
    ) -> Iterator[ORMTransaction]:
        """The ORM provider's transaction; a write there drops the document's tail."""
        tails = self.tails if mode != "readonly" else None
        if tails is not None:
            tails.drop(doc_id)
        try:
            with super().transaction(mode, doc_id, doc_type=doc_type) as tx:
                yield tx
        finally:
            if tails is not None:
                tails.drop(doc_id)

    # -- group commit ---------------------------------------------------------

    def _write(self, write: _Write) -> SyncStep | None:
        """Run one write, in a group with the writes of other threads if it can."""
        if self.group_commit == 1 or connections[self.using].in_atomic_block:
            # Inside the caller's transaction, the write must be part of it.
            self._started([write])
            rows = self._execute(WRITE_SQL, write.statement_params(), write.req.doc_id)
            changes.note(self.using, write.req.doc_id)  # for webhooks (on the caller's commit)
            [outcome] = self._answers([write], [Outcome(value=rows)], [0])
            if outcome.error is not None:
                raise outcome.error
            return outcome.value
        return self._groups.submit(write)

    def _answers(
        self, group: Sequence[_Write], outcomes: list[Outcome[Rows]], order: list[int]
    ) -> list[Outcome[SyncStep | None]]:
        """Each write's answer, made in the order they ran, before the next
        group starts (so that the tail holds this group's batches by then).

        A write is told the batches the group's earlier writes of its document
        stored (the function did not read them again); a write whose answer
        fails (its batches do not join up: ``_joined``) fails alone.
        """
        answers: list[Outcome[SyncStep | None]] = [Outcome() for _ in group]
        written: dict[str, list[Batch]] = {}
        for i in order:
            write, outcome = group[i], outcomes[i]
            if outcome.error is not None:
                answers[i] = Outcome(error=outcome.error)
                continue
            req, rows = write.req, outcome.value
            assert rows is not None
            stored = written.setdefault(req.doc_id, [])
            try:
                has_doc = req.serialized_doc is not None
                step = self._step(rows, req, has_doc, write.owner, write.held, stored)
                answers[i] = Outcome(value=step)
            except Exception as exc:  # noqa: BLE001  (this write's alone, as if in its request)
                answers[i] = Outcome(error=exc)
            latest = next((row[1] for row in rows if row[0] == "doc"), None)
            if latest is not None:  # it wrote: its batch has the clock after the record's
                stored.append(Batch(latest + 1, list(req.operations)))
        return answers

    async def _run_group_async(self, group: Sequence[_Write]) -> list[Outcome[SyncStep | None]]:
        """:meth:`_run_group` on the event loop's own connection (no thread hop)."""
        if self._async is None:
            return await hop(False, self._run_group, group)
        if self.using not in self._ready:  # the functions: installed on the thread path
            await hop(False, self._connect_here)
            self._ready.add(self.using)
        outcomes = await self._run_group_on_loop(group)
        lost = next((o.error for o in outcomes if isinstance(o.error, StorageUnavailable)), None)
        if lost is not None:
            StorageOutage.failed(lost)
        else:
            StorageOutage.succeeded()
        return outcomes

    async def _run_group_on_loop(self, group: Sequence[_Write]) -> list[Outcome[SyncStep | None]]:
        assert self._async is not None
        execute = self._async.execute
        params, order, columns = self._prepared(group)
        if len(group) > 1:
            try:
                rows = await execute(GROUP_SQL, columns, "a group", quiet=True)
            except StorageUnavailable as exc:
                return [Outcome(error=exc) for _ in group]
            except StorageError:  # nothing of the group was stored: each on its own
                pass
            else:
                return self._answers(group, self._committed(group, rows, order), order)
        alone: dict[int, Outcome[Rows]] = {}
        for i in order:  # in the order the group would have run them
            try:
                alone[i] = Outcome(value=await execute(WRITE_SQL, params[i], params[i][0]))
                changes.note(self.using, params[i][0])  # for webhooks: committed
            except (StorageError, StorageUnavailable) as exc:
                alone[i] = Outcome(error=exc)
        return self._answers(group, [alone[i] for i in range(len(group))], order)

    def _run_group(self, group: Sequence[_Write]) -> list[Outcome[SyncStep | None]]:
        """Run the writes of ``group`` in one transaction (on this thread's connection)."""
        params, order, columns = self._prepared(group)
        if len(group) > 1:
            try:
                rows = self._execute(GROUP_SQL, columns, "a group", quiet=True)
            except StorageUnavailable as exc:
                return [Outcome(error=exc) for _ in group]
            except StorageError:  # nothing of the group was stored: each on its own
                pass
            else:
                return self._answers(group, self._committed(group, rows, order), order)
        alone = {i: self._run_alone(params[i]) for i in order}  # as the group would have run
        return self._answers(group, [alone[i] for i in range(len(group))], order)

    def _prepared(
        self, group: Sequence[_Write]
    ) -> tuple[list[tuple[Any, ...]], list[int], list[list[Any]]]:
        """A group starts (:meth:`_started`): each write's parameters, the
        order they run in and the group function's parameter arrays."""
        self._started(group)
        params = [write.statement_params() for write in group]
        order, columns = _group_columns(params)
        return params, order, columns

    def _committed(
        self, group: Sequence[_Write], rows: Rows, order: list[int]
    ) -> list[Outcome[Rows]]:
        """The group function's rows per write, once its transaction committed."""
        for write in group:
            changes.note(self.using, write.req.doc_id)  # for webhooks: committed
        return [Outcome(value=item) for item in _split_rows(rows, order, len(group))]

    def _run_alone(self, params: tuple[Any, ...]) -> Outcome[Rows]:
        try:
            rows = self._execute(WRITE_SQL, params, params[0])
        except (StorageError, StorageUnavailable) as exc:
            return Outcome(error=exc)
        changes.note(self.using, params[0])  # for webhooks: committed
        return Outcome(value=rows)

    # -- connections ----------------------------------------------------------

    def _execute(self, sql: str, params: Any, doc_id: str, quiet: bool = False) -> Rows:
        """Run ``sql`` on this thread's connection (autocommit: one transaction).

        Raises ``StorageUnavailable`` when the database is lost, else
        ``StorageError`` (logged, unless ``quiet``).
        """
        import psycopg

        connection = connections[self.using]
        try:
            raw = self._raw_connection(connection)
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchall()
        except (psycopg.Error, DatabaseError) as exc:
            # As on the ORM path: a lost database is an outage (logged once by
            # docsync.outage), anything else a StorageError; a broken
            # connection is replaced on the next request.
            lost = connection_lost(exc)
            if connection.connection is None or connection.connection.broken:
                connection.close()
            if lost:
                raise StorageUnavailable() from exc
            if quiet:
                logger.info("Database error on %s: %s", doc_id, exc)
            else:
                logger.exception("Database error on document %r", doc_id)
            raise StorageError() from exc

    def _connect_here(self) -> None:
        """Connect this thread's connection (installing the functions if needed)."""
        self._raw_connection(connections[self.using])

    def _raw_connection(self, connection: Any) -> Any:
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"PostgresProvider needs a PostgreSQL database; {self.using!r} is "
                f"{connection.vendor}. Use docsync.providers.orm.ORMProvider there."
            )
        connection.ensure_connection()
        raw = connection.connection
        if (
            raw.prepare_threshold is None
            and "prepare_threshold" not in connection.settings_dict.get("OPTIONS", {})
        ):
            # Django turns psycopg's prepared statements off by default, and
            # then prepare=True does nothing: every sync would be planned
            # again (READ_SQL: 0.43 ms a pull instead of 0.09 here). Only the
            # statements docsync asks to prepare are (the threshold is never
            # reached by the ORM's); an explicit OPTIONS["prepare_threshold"]
            # (PgBouncer in transaction mode) is left alone.
            raw.prepare_threshold = NEVER_AUTOMATICALLY
        name = connection.settings_dict["NAME"]
        if name not in self._installed:
            with self._install_lock:
                if name not in self._installed:
                    self._install(raw)
                    self._installed.add(name)
        return raw

    def _install(self, raw: Any) -> None:
        """Create the sync function (once per process and database)."""
        model = get_user_model()
        pk = model._meta.pk
        connection = connections[self.using]
        quote = connection.ops.quote_name
        user = dict(
            user_table=quote(model._meta.db_table),
            user_pk=quote(pk.column),
            user_pk_type=pk.rel_db_type(connection),  # type: ignore[attr-defined]
        )
        sql = FUNCTION_SQL.format(
            function=FUNCTION,
            lock_document=LOCK_DOCUMENT_SQL.format(**user),
            group_clause=_group_clause(model, quote),
            **user,
        )
        group_sql = GROUP_FUNCTION_SQL.format(group_function=GROUP_FUNCTION, function=FUNCTION)
        with raw.transaction():
            # Two processes replacing a function at once would fail: take turns.
            raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (FUNCTION,))
            raw.execute(sql)
            raw.execute(group_sql)

    def _user_pk(self, user_id: str | None) -> str | None:
        """``user_id`` as the user table's pk (text), ``None`` when malformed."""
        if user_id is None:
            return None
        if user_id not in self._users:
            pk = user_pk(user_id)
            if len(self._users) > 10_000:
                self._users.clear()
            self._users[user_id] = None if pk is None else str(pk)
        return self._users[user_id]

    def __repr__(self) -> str:
        return f"PostgresProvider(using={self.using!r}, group_commit={self.group_commit})"
