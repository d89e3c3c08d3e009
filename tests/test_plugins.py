import sys
import textwrap

import numpy as np
import pytest

from openvino_synthcalib import plugins
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.stream import SyntheticStream

PLUGIN = """
import numpy as np
from openvino_synthcalib import hookimpl
from openvino_synthcalib.sources import Source, SourceType


class Checker(Source):
    scheme = "checker"

    def __init__(self, spec, size):
        super().__init__(spec)
        self.image_size = (size, size)

    def iter_images(self, indices, labels, seed, size=None, occurrences=None):
        s = self.image_size[0]
        board = (np.indices((s, s)).sum(0) % 2).astype(np.float32)
        yield np.stack([np.stack([board] * 3) for _ in indices])


@hookimpl
def synthcalib_add_sources():
    return [SourceType("checker", lambda arg, options, ctx: Checker("checker:" + arg, int(arg or 4)), "checkerboards")]


@hookimpl
def synthcalib_add_presets():
    return {"halves": {"input_range": (0.0, 0.5)}}
"""


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A third-party package installed the normal way: a module plus a dist-info with an entry point."""
    (tmp_path / "synthcalib_checker.py").write_text(PLUGIN)
    info = tmp_path / "synthcalib_checker-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: synthcalib-checker\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [openvino_synthcalib]
            checker = synthcalib_checker
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.get_plugin_manager.cache_clear()
    yield
    plugins.get_plugin_manager.cache_clear()
    sys.modules.pop("synthcalib_checker", None)


def test_builtins_are_plugins():
    types = plugins.source_types()
    assert {"generator", "images", "noise"} <= set(types)
    assert plugins.plugin_distribution(types["noise"].meta["plugin"])[0] == "openvino_synthcalib"


def test_third_party_entry_point(fake_distribution, capsys):
    types = plugins.source_types()
    assert "checker" in types
    assert plugins.plugin_distribution(types["checker"].meta["plugin"]) == ("synthcalib-checker", "1.2.3")
    stream = SyntheticStream("checker:6", 3)
    x, _ = stream[0]
    assert x.shape == (3, 6, 6) and x[0, 0, 1] == 1.0
    assert "halves" in plugins.presets()
    from openvino_synthcalib.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "checker" in out and "synthcalib-checker 1.2.3" in out


def test_bare_paths_guess_scheme(assets):
    assert SyntheticStream(str(assets["generator"]), 2).source.scheme == "generator"
    assert SyntheticStream(str(assets["images"]), 2).source.scheme == "images"
    with pytest.raises(SynthcalibError, match="no scheme"):
        SyntheticStream(str(assets["root"] / "missing.bin"), 2)
    x, _ = SyntheticStream(str(assets["images"]), 2)[0]
    assert np.isfinite(x).all()
