"""Put this folder first on PYTHONPATH to make the optional packages a lent GPU machine lacks
unimportable, in the Python process and in every Python process it starts (they inherit PYTHONPATH):
`import onnxslim` then fails as it does where the package is not installed."""

import sys

BLOCKED = ("onnxslim", "tritonclient", "pytriton", "tensorrt", "tensorrt_libs", "pycuda")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/without_optional)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
