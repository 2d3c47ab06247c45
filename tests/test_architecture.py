"""The shape of the code, checked: data flows AWS/Slack -> adapters -> core -> application -> renderers ->
surfaces, and nothing reaches past a layer or into another module's private names."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in ``path``."""
    package = ".".join(path.relative_to(BOT.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            module = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            found.append((module, [alias.name for alias in node.names]))
    return found


def modules(folder: str) -> list[Path]:
    return sorted((BOT / folder).rglob("*.py")) if folder else sorted(BOT.rglob("*.py"))


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_the_core_is_pure(path):
    for module, _ in imports(path):
        assert not module.startswith(("boto3", "botocore", "slack_sdk", "slack_bolt", "sqlite3",
                                      "sqlite_utils")), module
        assert not module.startswith("bot.") or module.startswith(("bot.core", "bot.format", "bot.errors")), module


@pytest.mark.parametrize("path", modules("render"), ids=lambda p: p.name)
def test_renderers_know_only_the_core(path):
    for module, _ in imports(path):
        assert not module.startswith(("boto3", "botocore", "slack_sdk", "slack_bolt", "sqlite3",
                                      "sqlite_utils")), module
        assert not module.startswith("bot.") or module.startswith(("bot.core", "bot.render", "bot.format")), module


def test_the_error_tree_is_pure():
    """bot/errors.py: every layer raises from it (the core too), so it needs nothing but the standard library (the
    core's models only to name types)."""
    for module, _ in imports(BOT / "errors.py"):
        assert module.split(".")[0] in ("__future__", "collections", "typing", "html", "re") \
            or module == "bot.core.models", module


def test_the_one_way_to_write_figures_is_pure():
    """bot/format.py: every layer writes figures through it, so it depends on nothing but the standard library."""
    for module, _ in imports(BOT / "format.py"):
        assert module.split(".")[0] in ("__future__", "datetime", "zoneinfo"), module


# the modules that make boto3 clients: the AWS adapters of the bot/aws/ package (each named by what it does;
# every client wrapped by bot/aws/errors.py, where botocore's exceptions become bot/errors.py's AwsError family,
# so nothing else needs to know them), and sample.py, which writes the demo's sample registry.
AWS_ADAPTERS = BOT / "aws"
BOTO_ADAPTERS = ("sample.py",)


def below_the_adapters(path: Path) -> bool:
    return path.is_relative_to(AWS_ADAPTERS) or str(path.relative_to(BOT)) in BOTO_ADAPTERS


@pytest.mark.parametrize("path", [p for p in modules("") if not below_the_adapters(p)],
                         ids=lambda p: str(p.relative_to(BOT)))
def test_nothing_above_the_aws_adapters_imports_boto(path):
    for module, _ in imports(path):
        assert module.split(".")[0] not in ("boto3", "botocore"), \
            f"{path.relative_to(BOT)} imports {module}: AWS is reached through bot/aws/, its errors are bot.errors'"


def test_the_boto_adapters_are_still_there():
    """The allowed list names real modules, the package holds the adapters, and the translation is where the
    docstrings say."""
    assert all((BOT / name).exists() for name in BOTO_ADAPTERS)
    assert {p.name for p in modules("aws")} >= {"__init__.py", "errors.py", "ecr.py", "runtimes.py", "billing.py"}
    assert any(module == "botocore.exceptions" for module, _ in imports(AWS_ADAPTERS / "errors.py"))
    assert not (BOT / "aws.py").exists() and not (BOT / "aws_errors.py").exists()


def test_the_aws_package_loads_nothing_at_import():
    """bot/aws/__init__.py imports nothing: importing one adapter does not load the others (nor boto3, for the
    translation alone)."""
    assert imports(AWS_ADAPTERS / "__init__.py") == []


@pytest.mark.parametrize("path", modules("aws"), ids=lambda p: p.name)
def test_the_aws_adapters_keep_to_the_size_limits(path):
    """Issue 22: no class over 300 lines, no function over 80 (the scan is its steps, EcrCollector a façade)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            lines, limit = node.end_lineno - node.lineno + 1, 300 if isinstance(node, ast.ClassDef) else 80
            assert lines <= limit, f"{path.name}: {node.name} is {lines} lines (at most {limit})"


@pytest.mark.parametrize("path", [*modules("slack"), BOT / "cli.py", BOT / "demo.py"], ids=lambda p: p.name)
def test_surfaces_go_through_the_application_layer(path):
    for module, _ in imports(path):
        assert module.split(".")[:2] not in (["bot", "aws"], ["bot", "store"]), \
            f"{path.name} reaches past the application layer: {module}"


@pytest.mark.parametrize("path", [p for p in modules("store") if p.name != "database.py"], ids=lambda p: p.name)
def test_the_store_groups_share_the_one_connection_handling(path):
    """bot/store/: one database, one module per table group, every group over ``database.Connections`` (the
    thread-local connections, the busy timeout, close); only database.py opens a connection."""
    assert "sqlite3" not in [module for module, _ in imports(path)], path.name
    assert "connect(" not in path.read_text(), path.name


# the surfaces (and the composition root) may hold the façade; a service is given the services it uses instead
FACADE_USERS = ("application.py", "cli.py", "demo.py", "jobs.py", "wiring.py")


@pytest.mark.parametrize("path", [p for p in modules("") if str(p.relative_to(BOT)) not in FACADE_USERS
                                  and p.relative_to(BOT).parts[0] != "slack"], ids=lambda p: str(p.relative_to(BOT)))
def test_services_never_depend_on_the_facade(path):
    for module, _ in imports(path):
        assert module != "bot.application", f"{path.relative_to(BOT)} imports the façade: take the service instead"


def test_a_policy_is_written_in_one_place():
    """Above the AWS adapters, only PolicyChanges (bot/adoption.py) puts or deletes a lifecycle policy, and it
    has one final safety check: every policy write passes it."""
    writers = [p.relative_to(BOT).as_posix() for p in modules("")
               if str(p.relative_to(BOT)) not in BOTO_ADAPTERS and p.relative_to(BOT).parts[0] != "aws"
               and re.search(r"\.(put|delete)_lifecycle_policy\(", p.read_text())]
    assert writers == ["adoption.py"]
    checks = [p.relative_to(BOT).as_posix() for p in modules("") for node in ast.walk(ast.parse(p.read_text()))
              if isinstance(node, ast.FunctionDef) and node.name == "_final_check"]
    assert checks == ["adoption.py"]


@pytest.mark.parametrize("path", modules(""), ids=lambda p: str(p.relative_to(BOT)))
def test_no_module_imports_another_modules_private_names(path):
    for module, names in imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.relative_to(BOT)} imports {private} from {module}"


TESTS = BOT.parent / "tests"


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_module_imports_another_test_module_or_the_conftest(path):
    """Shared helpers live in tests/helpers/, shared fixtures in tests/conftest.py (which pytest provides, never
    imported); the text is searched, so an import in a child process's script counts too."""
    found = re.findall(r"^\s*(?:from|import)\s+(tests\.(?:test_\w+|conftest)|tests\s+import\s+(?:test_\w+|conftest))",
                       path.read_text(), re.MULTILINE)
    assert not found, f"{path.relative_to(TESTS)} imports {found}: move what is shared to tests/helpers/ or conftest"
