"""Stand-ins for tensorrt, pycuda.driver and torch.cuda that copy the real behaviour the project relies on.

Each module's docstring names the versions and source files it copies; tensorrt_api_10.json and
tensorrt_api_11.json hold the real tensorrt API surface the fakes and the project are checked against.
"""
