"""Layers on real sandboxes: published versions, stacked read-only under /opt
in order (a later layer's file wins), importable from /opt/python, at most 5,
under the combined size cap, kept by functions after the layer is deleted."""
import json

import pytest

import sandbox
from conftest import requires_sandbox_privileges, zip_of
from sandbox.functions import InvalidParameterValueException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
HANDLER = """import os
def handler(event, context):
    import shared
    return {"shared": shared.WHO, "opt": sorted(os.listdir("/opt")), "note": open("/opt/note.txt").read(),
            "writable": os.access("/opt/note.txt", os.W_OK)}
"""



@pytest.fixture
def rt(tmp_path, no_leaks):
    (tmp_path / "app.py").write_text(HANDLER)
    with sandbox.Runtime() as runtime:
        runtime.code = str(tmp_path)
        yield runtime


def test_layers_stack_in_order_under_opt(rt):
    base = rt.publish_layer_version("base", zip_of({"python/shared.py": "WHO = 'base'\n", "note.txt": "base",
                                                      "bin/tool": "#!/bin/sh\n"}))
    override = rt.publish_layer_version("override", zip_of({"python/shared.py": "WHO = 'override'\n"}))
    assert base.version == 1 and base.to_dict()["LayerVersionArn"].endswith(":layer:base:1")
    fc = rt.create_function("f", rt.code, "app.handler", memory_mb=1769, layers=[base.arn, override.arn])
    assert [layer["Arn"] for layer in fc.to_dict()["Layers"]] == [base.arn, override.arn]
    result = json.loads(rt.invoke("f", b"{}").payload)
    assert result == {"shared": "override", "opt": ["bin", "note.txt", "python"], "note": "base", "writable": False}
    rt.update_function_configuration("f", layers=[override.arn, base.arn])     # order matters
    assert json.loads(rt.invoke("f", b"{}").payload)["shared"] == "base"
    rt.delete_layer_version("base", 1)                                         # functions keep their copy
    assert json.loads(rt.invoke("f", b"{}").payload)["shared"] == "base"
    assert rt.list_layer_versions("base") == []


def test_layer_limits_and_bad_references(rt):
    layers = [rt.publish_layer_version("l", zip_of({f"f{i}": "x"})).arn for i in range(6)]
    with pytest.raises(InvalidParameterValueException):
        rt.create_function("f", rt.code, "app.handler", layers=layers)          # 6 > 5
    for bad in (["arn:aws:lambda:us-east-1:123456789012:layer:nope:1"], ["not-an-arn"],
                ["arn:aws:lambda:eu-west-1:123456789012:layer:l:1"], "a string"):
        with pytest.raises(InvalidParameterValueException):
            rt.create_function("g", rt.code, "app.handler", layers=bad)
    with pytest.raises(InvalidParameterValueException):
        rt.publish_layer_version("../bad", zip_of({"a": "b"}))
    with pytest.raises(InvalidParameterValueException):                     # same safety rules as function code
        rt.publish_layer_version("evil", zip_of({"../escape": "x"}))
    assert [v.version for v in rt.list_layer_versions("l")] == [6, 5, 4, 3, 2, 1]
