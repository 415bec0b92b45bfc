"""Every ```python example in docs/api.md and docs/functions.md runs as written (they assert their own
claims), and every `$ sandbox ...` example in docs/cli.md exits as shown."""
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
