"""Write ccprof/tweaks/<id>/README.md for every catalog id, from the catalog and the tweak's own
modules: what it does, its stages, its options with their one default, what it conflicts with,
and the sources its advisor cites.

    python scripts/tweak_readmes.py          # rewrite them
    python scripts/tweak_readmes.py --check  # exit 1 when one is out of date (the tests run this)
"""
from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccprof.artefacts.tweaks import APPLY_ORDER, TWEAKS, conflict, describe  # noqa: E402

STAGES = (("advise.py", "advisor", "projects the saving from a profile (`ccprof analyze`, `ccprof advise`)"),
          ("runtime.py", "runtime applier", "applies it to the live objects of a re-run (`--verify`)"),
          ("codemod.py", "codemod", "rewrites the script (`ccprof apply`)"))


def _doc(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _strings(node: ast.AST, mod) -> list[str]:
    """The text of a string expression: constants, module-level names (``C.LORA_PUBLISHED``),
    a starred module-level list of them and + of them; what is known only at run time (an f-string's values) is left out."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and isinstance(getattr(mod, node.id, None), str):
        return [getattr(mod, node.id)]
    if isinstance(node, ast.Starred) and isinstance(node.value, ast.Name):     # *SOURCES, a module-level list
        value = getattr(mod, node.value.id, None)
        return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        value = getattr(getattr(mod, node.value.id, None), node.attr, None)
        return [value] if isinstance(value, str) else []
    if isinstance(node, ast.JoinedStr):
        if all(isinstance(v, ast.Constant) for v in node.values):
            return ["".join(v.value for v in node.values)]
        return []
    if isinstance(node, ast.BinOp):
        left, right = _strings(node.left, mod), _strings(node.right, mod)
        return ["".join(left + right)] if left and right else []
    return []


def sources(tweak: str) -> list[str]:
    """The strings of every ``sources=[...]`` the advisor passes, in order, once each (those
    known before a run: a GPU's datasheet is named in the advice itself)."""
    path = ROOT / "ccprof" / "tweaks" / tweak / "advise.py"
    mod = importlib.import_module(f"ccprof.tweaks.{tweak}.advise")
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "sources" and isinstance(node.value, (ast.List, ast.Tuple)):
            for elt in node.value.elts:
                for text in _strings(elt, mod):
                    text = " ".join(text.split())
                    if text and text not in out:
                        out.append(text)
    return out


def _default(f) -> str:
    d = f.metadata.get("default")
    if d is None:
        return "decided from the run"
    if callable(d):
        return "computed (see the description)"
    return f"`{d!r}`"


def readme(tweak: str) -> str:
    """The README text of one tweak."""
    info = TWEAKS[tweak]
    folder = ROOT / "ccprof" / "tweaks" / tweak
    lines = [f"# {tweak}: {info.title}", "", info.summary, "",
             f"Risk: {info.risk}. "
             + ("Its saving cuts the run's steps, not the step's time." if info.run_scoped
                else "Its saving changes the time or memory of a step."), "", "## Stages", ""]
    for name, what, role in STAGES:
        path = folder / name
        if path.exists():
            lines.append(f"- `{name}`, the {what}: {role}. {_doc(path)}")
    if not info.runtime:
        lines.append(f"- No runtime applier: {info.no_runtime}.")
    if not info.codemod:
        lines.append(f"- No codemod (`ccprof apply` does not rewrite scripts for it): {info.no_codemod}.")
    if info.codemod:
        lines.append(f"- Stacked rewrites apply it in position {APPLY_ORDER.index(tweak) + 1} of {len(APPLY_ORDER)}.")
    lines += ["", "## Options", ""]
    opts = describe(tweak)["options"]          # what `ccprof tweaks --json` says of them
    if not opts:
        lines.append("None.")
    else:
        lines += ["| option | `--option` key | default | what |", "|---|---|---|---|"]
        for o, f in zip(opts, fields(info.options)):
            lines.append(f"| `{o['name']}` | `{o['option']}` | {_default(f)} | {o['doc']} |")
    others = [t for t in TWEAKS if t != tweak and conflict(tweak, t)]
    if others:
        lines += ["", "## Not together with", ""]
        lines += [f"- `{t}`: {conflict(tweak, t)}" for t in others]
    src = sources(tweak)
    if src:
        lines += ["", "## Sources", ""] + [f"- {s}" for s in src]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for tweak in TWEAKS:
        path = ROOT / "ccprof" / "tweaks" / tweak / "README.md"
        text = readme(tweak)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if "--check" not in argv:
            path.write_text(text)
    if stale and "--check" in argv:
        print("out of date (run python scripts/tweak_readmes.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
