"""README.md and docs/ tell the truth: every snippet is marked and run (see
tests/snippets.py for the markers), every link resolves inside the
repository, and every setting and signal is documented."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import pytest
from django.core.checks import run_checks
from django.dispatch import Signal
from django.test import override_settings

from docsync import signals as docsync_signals
from docsync.bindings import get_binding_registry
from docsync.conf import DEFAULTS
from tests.conftest_db import database_unavailable
from tests.liveserver import free_port, manage, wait_for_port
from tests.services import _skip_or_fail, redis_unavailable
from tests.snippets import ROOT, all_snippets, load_module, markdown_files
from tests.snippets import find as find_snippet

KINDS = {"python", "settings", "shell", "server", "file", "output", "module", "skip"}
VENV_BIN = f"{Path(sys.executable).parent}/"


def ids(items):
    return [item.where for item in items]


# -- markers -------------------------------------------------------------------


def test_every_snippet_says_how_it_is_tested():
    unmarked = [s.where for s in all_snippets() if s.kind not in KINDS]
    assert not unmarked, (
        f"Code blocks without a '<!-- snippet: KIND -->' line before them: {unmarked}. "
        f"KIND is one of {sorted(KINDS)} (see tests/snippets.py)."
    )
    for snippet in all_snippets("skip"):
        assert snippet.arg, f"{snippet.where}: say why it is not run"


@pytest.mark.parametrize("snippet", all_snippets("file"), ids=ids(all_snippets("file")))
def test_file_snippets_are_the_files(snippet):
    path = ROOT / snippet.arg
    assert path.read_text(encoding="utf-8") == snippet.code, (
        f"{snippet.where} differs from {snippet.arg}: copy the file into the block"
    )


# -- running them --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("snippet", all_snippets("python"), ids=ids(all_snippets("python")))
def test_python_snippets_run(snippet):
    exec(compile(snippet.code, snippet.where, "exec"), {"__name__": "snippet"})


@pytest.mark.parametrize("snippet", all_snippets("settings"), ids=ids(all_snippets("settings")))
def test_settings_snippets_pass_the_checks(snippet):
    namespace: dict = {}
    exec(compile(snippet.code, snippet.where, "exec"), namespace)
    values = {name: value for name, value in namespace.items() if name.isupper()}
    assert values, f"{snippet.where} sets no setting"
    with override_settings(**values):
        errors = [m for m in run_checks() if m.is_serious() and m.id.startswith("docsync")]
        assert errors == []
        get_binding_registry()  # every binding imports and accepts its options


def example_env(tmp_path) -> dict[str, str]:
    """A fresh, migrated SQLite database for the example project."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    manage("migrate", "-v", "0", env=env, settings="docsync_project.settings")
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "docsync_project.settings", **env}


def bash(code: str) -> str:
    """A snippet's commands with this interpreter's bin/ for ``.venv/bin/``."""
    return "set -euo pipefail\n" + code.replace(".venv/bin/", VENV_BIN)


@pytest.mark.parametrize("snippet", all_snippets("shell"), ids=ids(all_snippets("shell")))
def test_shell_snippets_run(snippet, tmp_path):
    run = subprocess.run(
        ["bash", "-c", bash(snippet.code)],
        cwd=ROOT,
        env=example_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"{snippet.where} failed:\n{run.stdout}\n{run.stderr}"


def production_substitutions(code: str, db: str) -> tuple[str, list[int]]:
    """Point a server snippet at this machine's test services and free ports."""
    pg = urlparse(os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/x"))
    redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    replacements = {
        "postgres://postgres@127.0.0.1:5432/docsync": f"postgres://{pg.netloc}/{db}",
        "createdb -h 127.0.0.1 -U postgres docsync": (
            f"createdb -h {pg.hostname} -p {pg.port or 5432} -U {pg.username} {db}"
        ),
        "redis://127.0.0.1:6379/0": redis,
        "--host 0.0.0.0": "--host 127.0.0.1",
    }
    for old, new in replacements.items():
        code = code.replace(old, new)
    ports: list[int] = []

    def new_port(match: re.Match) -> str:
        ports.append(free_port())
        return str(ports[-1])

    code = re.sub(r"(?<=--port )8000\b", new_port, code)
    loop = re.search(r"for port in ([\d ]+); do", code)
    if loop:
        fresh = [free_port() for _ in loop.group(1).split()]
        ports.extend(fresh)
        code = code.replace(loop.group(0), f"for port in {' '.join(map(str, fresh))}; do")
    return code, ports


SETTINGS = "docsync_project.settings"


async def sync_once(url: str, token: str) -> dict:
    from tests.sioclient import Client

    client = await Client(url, "probe", token=token).connect()
    try:
        return await client.sync("probe-doc", operations=[["x"]], doc_type="plain")
    finally:
        await client.close()


def drop_database(db: str) -> None:
    pg = urlparse(os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/x"))
    subprocess.run(
        ["dropdb", "--if-exists", "-h", pg.hostname, "-p", str(pg.port or 5432)]
        + ["-U", pg.username, db],
        capture_output=True,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("snippet", all_snippets("server"), ids=ids(all_snippets("server")))
def test_server_snippets_serve(snippet, tmp_path):
    for unavailable in (database_unavailable("postgres"), redis_unavailable()):
        if unavailable:
            _skip_or_fail(unavailable)
    db = f"docsync_readme_{uuid.uuid4().hex[:8]}"
    code, ports = production_substitutions(snippet.code, db)
    assert ports, f"{snippet.where} starts no server on a --port"
    assert f"/{db} " in code, f"{snippet.where}: DATABASE_URL is not the one the test replaces"
    if "createdb" not in code:  # "with the database created as above"
        code = production_substitutions("createdb -h 127.0.0.1 -U postgres docsync\n", db)[0] + code
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", bash(code) + "\nwait\n"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "docsync_project.settings"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for port in ports:
            wait_for_port(port, timeout=60, proc=proc)
            # Every process answers the long-polling probe as the reference does.
            with pytest.raises(Exception) as refused:
                urlopen(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling")
            assert refused.value.code == 400
            assert b"Transport unknown" in refused.value.read()
        # The database is migrated: a user with a token syncs a document.
        env = {"DATABASE_URL": re.search(r"DATABASE_URL=(\S+)", code).group(1)}
        token = manage("docsync_token", "probe", "--create", env=env, settings=SETTINGS).strip()
        ack = asyncio.run(sync_once(f"http://127.0.0.1:{ports[0]}", token))
        assert ack["data"]["clock"] == 1, ack
    except Exception:
        print(log.read_text())
        raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        drop_database(db)


# -- links, settings and signals -----------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return re.findall(r"\[[^\]]+\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z]+:", target):
            broken.append(f"{target} (leaves the repository)")
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    assert documented == set(DEFAULTS), (
        f"docs/settings.md: undocumented {sorted(set(DEFAULTS) - documented)}, "
        f"not settings {sorted(documented - set(DEFAULTS))}"
    )
    for key, default in DEFAULTS.items():
        row = re.search(rf"^\| `{key}` \| (.*?) \|", text, flags=re.M).group(1)
        shown = f"`{default!r}`".replace("'", '"')
        assert row == shown, f"docs/settings.md gives {key} the default {row}; it is {shown}"


def test_every_signal_is_documented_with_its_arguments():
    text = (ROOT / "docs" / "signals.md").read_text(encoding="utf-8")
    source = (ROOT / "docsync" / "signals.py").read_text(encoding="utf-8")
    declared = []
    for block, name in re.findall(r"((?:^#:.*\n)+)(\w+) = Signal\(\)", source, flags=re.M):
        comment = " ".join(line[2:].strip() for line in block.splitlines())
        args = comment.split("provides args:", 1)[1].split("(", 1)[0]
        declared.append(([a.strip() for a in args.split(",") if a.strip()], name))
    signal_names = {n for n, v in vars(docsync_signals).items() if isinstance(v, Signal)}
    assert {name for _, name in declared} == signal_names, "every signal has '#: provides args'"
    for args, name in declared:
        section = re.search(rf"^## `{name}`\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
        assert section, f"docs/signals.md has no '## `{name}`' section"
        for arg in args:
            assert f"`{arg}`" in section.group(1), f"docs/signals.md: {name} lacks `{arg}`"


def test_the_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_snippet_parser_finds_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- snippet: skip why -->\n```sh\necho hi\n```\n\n```\nbare\n```\n")
    first, second = _parse(page)
    assert (first.kind, first.arg, first.lang, first.code) == ("skip", "why", "sh", "echo hi\n")
    assert second.kind is None and second.code == "bare\n"


def _parse(page: Path):
    from tests import snippets as module

    original = module.ROOT
    module.ROOT = page.parent
    try:
        return module.snippets(page)
    finally:
        module.ROOT = original


def test_the_docs_list_binding_squashes():
    binding = load_module("list_binding").AppendListBinding()
    ops = [{"append": [1, 2]}, {"append": ["three"]}]
    assert binding.squash(None, ops, doc_type="list", doc_id="l") == [1, 2, "three"]
    assert binding.squash([0], ops[:1], doc_type="list", doc_id="l") == [0, 1, 2]
    with pytest.raises(ValueError, match="append"):
        binding.squash([], [["not", "an", "append"]], doc_type="list", doc_id="l")
    assert binding.render([1, "a"]) == "- 1\n- a"


@pytest.mark.e2e
def test_the_docs_yjs_client_syncs_through_a_server(tmp_path):
    from tests.liveserver import LiveServer
    from tests.node import NODE_CACHE, node_script

    node_script("client.cjs")  # installs yjs and socket.io-client (skips without node)
    script = NODE_CACHE / "docs-yjs-client.cjs"
    script.write_text(find_snippet("module", "yjs_client.cjs").code)
    bindings = next(s for s in all_snippets("settings") if "YjsBinding" in s.code)
    namespace: dict = {}
    exec(bindings.code, namespace)
    env = {
        "E2E_BINDINGS": json.dumps(namespace["DOCSYNC"]["BINDINGS"]),
        "E2E_SQUASH_THRESHOLD": "1",
    }
    server = LiveServer(env).start()
    try:
        outputs = []
        for user in ("alice", "bob"):
            run = subprocess.run(
                ["node", str(script), server.url, f"valid-{user}"],
                cwd=NODE_CACHE,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        refused = subprocess.run(
            ["node", str(script), server.url, "wrong"], cwd=NODE_CACHE, capture_output=True,
            text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.stop()
    assert outputs[0] == "clock 1:\nline from user alice\n"
    # bob got alice's line (from the squashed snapshot) and added his.
    assert outputs[1] == "clock 2:\nline from user alice\nline from user bob\n"
    assert refused.returncode == 1
    assert refused.stderr.strip() == "refused: Authentication failed: invalid credentials"
