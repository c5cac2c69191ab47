"""``ccprof apply`` keeps a script's file form: BOM, PEP 263 coding cookie, CRLF/CR line
endings, mixed endings; a file that does not decode gets a clear error. Also the one-parse
machinery (``ModuleFacts``) agrees with libcst's metadata providers."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider, QualifiedNameProvider

from ccprof.applier.codemods import apply_source
from ccprof.applier.codemods._base import add_needed_imports
from ccprof.applier.codemods._text import (
    BOM,
    ScriptEncodingError,
    ScriptText,
    decode_script,
    encode_script,
    format_change,
    read_script,
    write_script,
)
from ccprof.script.facts import ModuleFacts
from tests.helpers.paths import ROOT

SCRIPT = textwrap.dedent("""\
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    """)
TF32_LINE = "torch.backends.cuda.matmul.allow_tf32 = True"


def _apply_file(path: Path, out: Path, *tweaks: str):
    script = read_script(path)
    result = apply_source(script.source, list(tweaks), path=str(path), to_path=str(out), like=script)
    write_script(out, result.source, like=script)
    return script, result


def test_bom_file_applies_and_keeps_the_bom(tmp_path: Path) -> None:
    src = tmp_path / "train.py"
    src.write_bytes(BOM + SCRIPT.encode())
    out = tmp_path / "out.py"
    script, result = _apply_file(src, out, "tf32")
    assert script.bom and script.encoding == "utf-8" and not script.source.startswith("\ufeff")
    assert result.applied == ["tf32"]
    data = out.read_bytes()
    assert data.startswith(BOM) and not data[3:].startswith(BOM)
    assert TF32_LINE in data.decode("utf-8-sig")
    assert "\ufeff" not in result.diff and not result.diff.startswith("# ccprof")


def test_bom_character_in_a_str_source_is_accepted_and_kept() -> None:
    """Callers that read with encoding="utf-8" (not utf-8-sig) pass U+FEFF first."""
    result = apply_source("\ufeff" + SCRIPT, ["tf32"])
    assert result.applied == ["tf32"]
    assert result.source.startswith("\ufeff") and result.source.count("\ufeff") == 1


def test_crlf_kept_and_diff_shows_only_the_edit(tmp_path: Path) -> None:
    src = tmp_path / "train.py"
    src.write_bytes(SCRIPT.replace("\n", "\r\n").encode())
    out = tmp_path / "out.py"
    script, result = _apply_file(src, out, "tf32")
    assert script.newline == "\r\n" and "\r" not in script.source
    data = out.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > SCRIPT.count("\n")
    assert TF32_LINE.encode() + b"  # TF32" in data
    # the diff is of the text: no carriage returns, only the inserted lines changed
    assert "\r" not in result.diff and not result.diff.startswith("# ccprof")
    changed = [ln for ln in result.diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed and all(ln.startswith("+") for ln in changed), changed
    assert len(changed) <= 3        # a blank line and the two TF32 lines


def test_crlf_in_a_str_source_is_kept() -> None:
    result = apply_source(SCRIPT.replace("\n", "\r\n"), ["tf32"])
    assert result.applied == ["tf32"]
    assert result.source.count("\r\n") == result.source.count("\n")
    assert "\r" not in result.diff


def test_cr_only_line_endings_kept(tmp_path: Path) -> None:
    src = tmp_path / "train.py"
    src.write_bytes(SCRIPT.replace("\n", "\r").encode())
    out = tmp_path / "out.py"
    script, result = _apply_file(src, out, "tf32")
    assert script.newline == "\r" and result.applied == ["tf32"]
    assert b"\n" not in out.read_bytes()


def test_latin1_cookie_read_and_written_in_latin1(tmp_path: Path) -> None:
    text = "# -*- coding: latin-1 -*-\n" + SCRIPT.replace("model = nn", "name = 'café'  # déjà vu\nmodel = nn")
    src = tmp_path / "train.py"
    src.write_bytes(text.encode("latin-1"))
    out = tmp_path / "out.py"
    script, result = _apply_file(src, out, "tf32")
    assert script.declared and script.encoding == "iso-8859-1" and "café" in script.source
    assert result.applied == ["tf32"]
    data = out.read_bytes()
    assert "café".encode("latin-1") in data and "café".encode("utf-8") not in data
    assert data.startswith(b"# -*- coding: latin-1 -*-\n")
    back = read_script(out)
    assert back.encoding == script.encoding and TF32_LINE in back.source and "déjà vu" in back.source
    assert not result.diff.startswith("# ccprof")


def test_output_char_outside_the_encoding_is_a_clear_error() -> None:
    like = decode_script("# coding: latin-1\nx = 1\n".encode("latin-1"), "f.py")
    with pytest.raises(ScriptEncodingError, match=r"f.py: cannot write the result as iso-8859-1.*U\+20AC.*line 3"):
        encode_script(like.source + "y = '€'\n", like)


def test_mixed_line_endings_left_as_they_are(tmp_path: Path) -> None:
    lines = SCRIPT.splitlines(keepends=True)
    raw = "".join(ln.replace("\n", "\r\n") if i % 2 else ln for i, ln in enumerate(lines))
    src = tmp_path / "train.py"
    src.write_bytes(raw.encode())
    out = tmp_path / "out.py"
    script, result = _apply_file(src, out, "tf32")
    assert script.newline is None and script.source == raw
    assert result.applied == ["tf32"]
    data = out.read_bytes().decode()
    for ln in lines:                               # every original line keeps its own ending
        assert (ln.replace("\n", "\r\n") if lines.index(ln) % 2 else ln) in data
    assert not result.diff.startswith("# ccprof")
    # nothing to do: written back byte for byte
    write_script(out, script.source, like=script)
    assert out.read_bytes() == raw.encode()


@pytest.mark.parametrize("data", [
    b"import torch\n", BOM + b"import torch\r\n", b"a = 1\rb = 2\r", b"x = 1\r\ny = 2\n",
    "# -*- coding: cp1252 -*-\ns = '\u20ac'\r\n".encode("cp1252"), b"",
])
def test_read_then_write_is_byte_for_byte(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "s.py"
    src.write_bytes(data)
    script = read_script(src)
    write_script(tmp_path / "t.py", script.source, like=script)
    assert (tmp_path / "t.py").read_bytes() == data
    assert format_change(script.source, script) is None


def test_invalid_utf8_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.py"
    src.write_bytes(b"import torch\nname = 'caf\xe9'\n")
    with pytest.raises(ValueError, match=r"bad\.py: not a UTF-8 Python file: byte 0xe9 at line 2, column 12") as e:
        read_script(src)
    assert "no coding cookie" in str(e.value)
    # on line 1, where tokenize itself complains about the encoding declaration
    src.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ScriptEncodingError, match=r"not a UTF-8 Python file: byte 0xff at line 1"):
        read_script(src)


def test_bad_cookie_and_undecodable_declared_encoding(tmp_path: Path) -> None:
    src = tmp_path / "bad.py"
    src.write_bytes(b"# -*- coding: no-such-codec -*-\nx = 1\n")
    with pytest.raises(ScriptEncodingError, match="bad.py: .*coding cookie names an encoding Python does not know"):
        read_script(src)
    src.write_bytes(b"# coding: cp1252\nx = '\x81'\n")          # 0x81 is undefined in cp1252
    with pytest.raises(ScriptEncodingError, match=r"not a cp1252 Python file: byte 0x81 at line 2.*coding cookie says cp1252"):
        read_script(src)


def test_format_change_is_noted_at_the_top_of_the_diff() -> None:
    """When the bytes written would not read back in the input's form, the diff says so first:
    here the caller passes CRLF text *and* a CRLF ``like``, so write_script would write \\r\\r\\n."""
    like = ScriptText(SCRIPT, newline="\r\n")
    result = apply_source(SCRIPT.replace("\n", "\r\n"), ["tf32"], like=like)
    first, rest = result.diff.split("\n", 1)
    assert first.startswith("# ccprof: the file is written differently") and "line endings CRLF -> mixed" in first
    assert rest.startswith("--- <script>")
    # the normal way round: no note
    assert not apply_source(like.source, ["tf32"], like=like).diff.startswith("# ccprof")
    # a coding cookie that no longer sits in line 1 or 2 changes how Python reads the file
    cookie_moved = ScriptText("x = 1\n\n# -*- coding: latin-1 -*-\n", encoding="iso-8859-1", declared=True)
    assert "Python reads it as utf-8" in format_change(cookie_moved.source, cookie_moved)


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_apply_keeps_bom_and_crlf(tmp_path: Path) -> None:
    src = tmp_path / "train.py"
    src.write_bytes(BOM + SCRIPT.replace("\n", "\r\n").encode())
    out = tmp_path / "train_tf32.py"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "apply", str(src), "-t", "tf32", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(BOM) and data.count(BOM) == 1
    assert data.count(b"\r\n") == data.count(b"\n") > SCRIPT.count("\n")
    assert TF32_LINE.encode() in data
    assert "\r" not in proc.stdout and "+torch.backends.cuda.matmul.allow_tf32" in proc.stdout


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_apply_invalid_utf8_fails_clearly(tmp_path: Path) -> None:
    src = tmp_path / "bad.py"
    src.write_bytes(b"import torch\nx = '\xff'\n")
    proc = subprocess.run([sys.executable, "-m", "ccprof", "apply", str(src), "-t", "tf32", "-o",
                           str(tmp_path / "out.py")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert "not a UTF-8 Python file" in proc.stderr and "bad.py" in proc.stderr
    assert not (tmp_path / "out.py").exists()


# --------------------------------------------------------------------------- one parse, shared facts

FACT_SCRIPT = textwrap.dedent('''\
    """Doc."""
    import torch as T
    from torch import nn, optim
    from torch.nn import functional as F


    @T.no_grad()
    def evaluate(model, xs):
        return [F.relu(model(x)) for x in xs if x is not None]


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            with T.autocast("cpu") as ctx:
                y = self.fc(x) if x.ndim else x
            return {k: v for k, v in {"y": y}.items()}


    model = Net()
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(3):
        loss = model(T.randn(8, 4)).sum()
        loss.backward()
        opt.step()
    ''')


@pytest.mark.parametrize("path", [None, *sorted((ROOT / "examples").glob("*.py"))])
def test_module_facts_match_libcst_metadata(path: Path | None) -> None:
    code = FACT_SCRIPT if path is None else path.read_text(encoding="utf-8")
    module = cst.parse_module(code)
    facts = ModuleFacts(module)
    assert facts.code == code and facts.module is module
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    meta = wrapper.resolve_many([ParentNodeProvider, PositionProvider, QualifiedNameProvider])
    for node, parent in meta[ParentNodeProvider].items():
        assert facts.parent(node) is parent
    for node, pos in meta[PositionProvider].items():
        assert facts.line(node) == pos.start.line
    for node, names in meta[QualifiedNameProvider].items():
        if isinstance(node, (cst.Name, cst.Attribute, cst.Call)):
            names = names() if callable(names) else names          # libcst stores a LazyValue
            assert facts.qnames(node) == {q.name for q in names}

    class Order(cst.CSTVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[cst.CSTNode] = []

        def on_visit(self, node: cst.CSTNode) -> bool:
            if isinstance(node, (cst.Call, cst.ClassDef, cst.FunctionDef, cst.Assign)):
                self.seen.append(node)
            return True

    order = Order()
    module.visit(order)
    assert [n for n in facts.nodes if isinstance(n, (cst.Call, cst.ClassDef, cst.FunctionDef, cst.Assign))] == order.seen


def test_facts_skip_scope_analysis_when_the_text_rules_it_out() -> None:
    """tf32 on a plain script needs no qualified name: no scope analysis is run for it."""
    from libcst.codemod import CodemodContext

    from ccprof.applier.codemods import CODEMODS, _load

    _load()
    facts = ModuleFacts(cst.parse_module(SCRIPT))
    CODEMODS["tf32"](CodemodContext(), {}).rewrite(facts)
    assert not facts.scopes_resolved


def test_imports_added_on_a_script_with_many_top_level_statements() -> None:
    """libcst's AddImportsVisitor pattern-matches the whole module body recursively (a
    RecursionError past ~1,000 statements); ccprof runs it on the module's head only."""
    helpers = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(1500))
    code = "import os\n\n\n" + helpers + SCRIPT.replace("import torch\nimport torch.nn as nn\n", "import torch.nn as nn\n")
    result = apply_source(code, ["tf32"])
    assert result.applied == ["tf32"]
    assert result.source.startswith("import os\nimport torch\n")


@pytest.mark.parametrize("code", [
    "import os\n\n\ndef f():\n    pass\n",
    '"""Doc."""\nfrom os import path\n# note\nclass A:\n    pass\nx = 1\n',
    "class A:\n    pass\n",
    "x = 1\nimport os\ndef f():\n    pass\n",
    "",
    "from torch import nn\n\nif True:\n    pass\n",
])
def test_head_only_imports_match_add_imports_visitor(code: str) -> None:
    from libcst.codemod import CodemodContext
    from libcst.codemod.visitors import AddImportsVisitor

    def ctx() -> CodemodContext:
        c = CodemodContext()
        AddImportsVisitor.add_needed_import(c, "torch")
        AddImportsVisitor.add_needed_import(c, "torch", "nn")
        AddImportsVisitor.add_needed_import(c, "peft", "LoraConfig")
        return c

    module = cst.parse_module(code)
    expected = AddImportsVisitor(ctx()).transform_module(module).code
    assert add_needed_imports(ctx(), module).code == expected


def test_every_codemod_loads_after_one_module_was_imported_directly() -> None:
    """``selection`` imports ``mixed_precision`` first; ``codemod_ids`` must still list all."""
    code = ("import ccprof.applier.codemods.selection\n"
            "from ccprof.applier.codemods import codemod_ids\n"
            "print(','.join(codemod_ids()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert {"tf32", "mixed_precision", "compile"} <= set(proc.stdout.strip().split(","))


def test_rewrite_shares_untouched_subtrees_with_the_old_module() -> None:
    """The edit pass visits only the paths to the edited nodes: the rest of the new module is
    the old module's own nodes (so the next tweak's facts need no deep copy)."""
    from libcst.codemod import CodemodContext

    from ccprof.applier.codemods import CODEMODS, _load

    _load()
    facts = ModuleFacts(cst.parse_module(SCRIPT))
    new = CODEMODS["tf32"](CodemodContext(), {}).rewrite(facts)
    old_ids = {id(s) for s in facts.module.body}
    kept = [s for s in new.body if id(s) in old_ids]
    assert len(kept) == len(facts.module.body) and len(new.body) == len(kept) + 2   # + the two TF32 lines
    assert TF32_LINE in ModuleFacts(new).code
