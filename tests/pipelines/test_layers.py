"""Imports point one way: pipelines -> apps -> core (docs/architecture.md). An app never imports another app."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_core_imports_no_app_and_no_pipeline():
    for f in (ROOT / "core").rglob("*.py"):
        bad = {m for m in _imports(f) if m.split(".")[0] in ("apps", "pipelines")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_apps_import_core_and_their_own_package_only():
    for app in (p for p in (ROOT / "apps").iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        for f in app.rglob("*.py"):
            mods = _imports(f)
            bad = {m for m in mods if m.split(".")[0] == "pipelines"
                   or (m.startswith("apps.") and m.split(".")[1] != app.name)}
            assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
