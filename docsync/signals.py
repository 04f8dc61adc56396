"""Django signals sent after the fact; receivers take ``**kwargs``.

They are sent with ``asend_robust``: a receiver that raises is logged and
never breaks syncing. Signals notify; authorization decides.

Every signal also gives ``server`` (the ``DocSyncServer``) and ``user``: the
Django user the connection authenticated as (``None`` when the
``authenticate`` in use returns no user object, and for refused
connections). The signals about one document give ``document``: its
``docsync.models.Document`` row with ``ORMProvider`` (fetched only when a
receiver is connected; without the snapshot column), ``None`` with other
providers or when the document does not exist (a refused request).
"""

from django.dispatch import Signal

#: provides args: server, user_id, device_id, client_id, context, user
client_connected = Signal()

#: provides args: server, user_id, device_id, client_id, reason, user
client_disconnected = Signal()

#: provides args: server, user_id, device_id, client_id, doc_id, user, document
doc_subscribed = Signal()

#: provides args: server, user_id, device_id, client_id, doc_id, reason, user, document
#: (reason is ``unsubscribe-doc``, the disconnect reason, or ``access revoked``)
doc_unsubscribed = Signal()

#: provides args: server, user_id, device_id, client_id, status, req, res, duration_ms,
#: clients_count, devices_count, error, doc_id, user, document
sync_finished = Signal()

#: provides args: server, user_id, device_id, client_id, doc_id, user, document
doc_deleted = Signal()

#: provides args: provider, doc_id, clock, restored_from, user_id, user, document
#: (``docsync.history.restore_document``, after the commit; sender is the provider's class)
doc_restored = Signal()

#: provides args: server, user_id, device_id, client_id, doc_id, clock, operations, user,
#: document (a server-side edit by ``docsync.api.apply_operations``, after it committed)
doc_edited = Signal()
