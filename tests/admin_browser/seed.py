"""Fill the example project's database with documents to look at in the admin.

    DATABASE_URL=sqlite:////tmp/admin-check.sqlite3 python manage.py migrate
    DATABASE_URL=sqlite:////tmp/admin-check.sqlite3 python manage.py shell \
        -c "exec(open('tests/admin_browser/seed.py').read())"

Makes the superuser ``admin`` (password ``admin-pass-123``) and documents of
every kind: squashed with pending batches, never squashed, a failed squash,
a long one, a binary (Yjs-like) one of a type with no binding, a tombstone.
Not run by pytest.
"""

from django.contrib.auth import get_user_model

from docsync.bindings import get_binding_registry
from docsync.models import Document
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider
from docsync.squash import squash_document

User = get_user_model()
admin_user = User.objects.filter(username="admin").first() or User.objects.create_superuser(
    "admin", "admin@example.com", "admin-pass-123"
)
alice = User.objects.filter(username="alice").first() or User.objects.create_user("alice")
provider, registry = ORMProvider(), get_binding_registry()
Document.objects.all().delete()


def text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def insert(node: str, value: str, parent=0) -> list:
    return [[[0, [[node, "p"]], parent, 0, 0]], {node: {"text": text(value)}}]


def write(doc_id, doc_type, batches, snapshot=None, user=alice, device="laptop"):
    origin = Origin(str(user.pk), device, f"tab-{device}")
    with provider.transaction("readwrite", doc_id, doc_type=doc_type) as tx:
        if snapshot is not None:
            tx.save_serialized_doc(snapshot, 0, origin)
        for batch in batches:
            tx.save_operations(batch, origin)


# Squashed once, then three pending batches from two devices.
doc = "01k00000000000000000000001"
write(doc, "doc", [[insert("n1", "Shopping list")], [insert("n2", "Milk, eggs, bread")]])
squash_document(provider, registry, doc)
write(doc, "doc", [[insert("n3", "Call Bob about the trip ✈️")]], device="phone")
write(doc, "doc", [[insert("n4", "Ünïcödé & <html> is escaped"), insert("n5", "nested", "n4")]])
write(doc, "doc", [[[[], {"n1": {"text": text("Shopping list (updated)")}}]]], device="phone")

# Never squashed.
write("01k00000000000000000000002", "doc", [[insert("a", "Draft")], [insert("b", "more")]])

# A long document, squashed.
long_id = "01k00000000000000000000003"
paragraphs = [[insert(f"p{i}", f"Paragraph {i}: " + "lorem ipsum " * 12)] for i in range(60)]
write(long_id, "doc", paragraphs)
squash_document(provider, registry, long_id)

# Operations the binding refuses: the squash fails and says why.
bad = "01k00000000000000000000004"
write(bad, "doc", [[{"hello": "world"}]], snapshot=["01k00000000000000000000004", "doc", {}, []])
try:
    squash_document(provider, registry, bad)
except Exception as exc:  # noqa: BLE001
    print("expected squash failure:", exc)

# A type with no binding, binary (Yjs-like) values.
write("canvas-board-7", "canvas", [[bytes(range(40))], [b"\x01\x02", b"\x03"]], snapshot=bytes(300))

# A tombstone.
write("01k00000000000000000000005", "doc", [[insert("z", "gone")]])
with provider.transaction("readwrite", "01k00000000000000000000005") as tx:
    tx.delete_doc()

print("documents:", list(Document.objects.values_list("doc_id", "latest_clock", "snapshot_clock")))
