import subprocess
import sys

import napari_hypseg.core as core


def test_every_public_name_resolves_to_its_module_object():
    for name in core.__all__:
        value = getattr(core, name)
        module = __import__(f"napari_hypseg.core.{core._PUBLIC[name]}", fromlist=[name])
        assert value is getattr(module, name)


def test_importing_the_core_does_not_import_torch_or_qt():
    code = "import sys, napari_hypseg.core; print(sorted(m for m in ('torch', 'qtpy', 'napari') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    try:
        core.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected an AttributeError")
