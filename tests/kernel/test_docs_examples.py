"""Every ```python example in docs/api.md and docs/functions.md runs as written (they assert their own
claims), and every `$ ...` line of docs/cli.md's console blocks prints what is shown."""
import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def _blocks(name, lang):
    with open(os.path.join(DOCS, name)) as f:
        text = f.read()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


API_BLOCKS = _blocks("api.md", "python") if os.path.exists(os.path.join(DOCS, "api.md")) else []
FUNCTIONS_BLOCKS = _blocks("functions.md", "python")


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(len(API_BLOCKS)))
def test_api_example_runs(index, no_leaks):
    code = API_BLOCKS[index]
    exec(compile(code, f"docs/api.md[block {index}]", "exec"), {"__name__": "__docs__"})


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(len(FUNCTIONS_BLOCKS)))
def test_functions_example_runs(index, no_leaks):
    code = FUNCTIONS_BLOCKS[index]
    exec(compile(code, f"docs/functions.md[block {index}]", "exec"), {"__name__": "__docs__"})


def test_docs_have_examples():
    assert len(API_BLOCKS) >= 5, "docs/api.md lost its runnable examples"
    assert len(FUNCTIONS_BLOCKS) >= 4, "docs/functions.md lost its runnable examples"


def _console_examples():
    """(command, expected output lines) for every `$ ` line of docs/cli.md's
    console blocks, in order (later commands may use what earlier ones made)."""
    examples = []
    for block in _blocks("cli.md", "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


CLI_EXAMPLES = _console_examples()


def _same(expected: str, got: str) -> bool:
    if expected.startswith("{"):   # --json: timings differ from run to run; the fields may not
        import json

        want, have = json.loads(expected), json.loads(got)
        return want.keys() == have.keys() and all(have[k] == v for k, v in want.items()
                                                   if not isinstance(v, (int, float)) or isinstance(v, bool)
                                                   or k == "exit_code")
    return expected.rstrip() == got.rstrip()


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(len(CLI_EXAMPLES)))
def test_cli_example_prints_what_the_docs_show(index, tmp_path):
    import subprocess

    from conftest import REAL_PYTHON

    command, expected = CLI_EXAMPLES[index]
    script = f'sandbox() {{ "{REAL_PYTHON}" -m sandbox "$@"; }}\n{command}\n'
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.path.join(DOCS, "..")})
    repo = os.path.realpath(os.path.join(DOCS, ".."))
    lines = out.stdout.replace(repo + "/", "<repo>/").splitlines()   # the docs show the checkout as <repo>
    if command.startswith("sandbox doctor"):   # the values are this host's: compare what is checked and its verdict
        lines, expected = [line.split(":")[0] for line in lines], [line.split(":")[0] for line in expected]
    assert len(lines) == len(expected) and all(_same(e, g) for e, g in zip(expected, lines)), \
        f"{command!r} printed {lines!r}, docs/cli.md shows {expected!r}"


def test_cli_docs_have_examples():
    assert len(CLI_EXAMPLES) >= 10, "docs/cli.md lost its examples"
