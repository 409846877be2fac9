"""Put this folder first on PYTHONPATH to make the optional packages a lent GPU machine lacks look
absent, in the Python process and in every Python process it starts (they inherit PYTHONPATH):
`import onnxslim` raises ModuleNotFoundError and `importlib.util.find_spec("tensorrt")` is None, as
where the packages are not installed."""

import sys

BLOCKED = ("onnxslim", "tritonclient", "pytriton", "tensorrt", "tensorrt_libs", "pycuda")


class _Hiding:
    """A meta path finder that finds what `finder` finds, except the blocked packages."""

    def __init__(self, finder) -> None:
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):  # invalidate_caches, find_distributions, ...
        return getattr(self.finder, attribute)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
