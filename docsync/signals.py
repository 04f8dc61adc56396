"""Django signals sent after the fact; receivers take ``**kwargs``.

They are sent with ``asend_robust``: a receiver that raises is logged and
never breaks syncing. Signals notify; authorization decides.
"""

from django.dispatch import Signal

#: provides args: user_id, device_id, client_id, context, user
client_connected = Signal()

#: provides args: user_id, device_id, client_id, reason, user
client_disconnected = Signal()

#: provides args: user_id, device_id, client_id, doc_id, user
doc_subscribed = Signal()

#: provides args: user_id, device_id, client_id, doc_id, reason, user
doc_unsubscribed = Signal()

#: provides args: user_id, device_id, client_id, status, req, res, duration_ms,
#: clients_count, devices_count, error, doc_id, user
sync_finished = Signal()

#: provides args: user_id, device_id, client_id, doc_id, user
doc_deleted = Signal()
