"""``synthcalib serve``: a local web page to preview a generator and calibrate a model from it.

Needs the ``[web]`` extra (FastAPI, uvicorn). Nothing here is imported by ``import
openvino_synthcalib``; the CLI imports :mod:`.runner` only for the ``serve`` command.
"""
