"""The packaged weights of lcf (installed as the package ``lcf_weights``; pyproject.toml maps it to ``weights/``).

Data only: ``manifest.json``, the safetensors files and ``README.md`` (the model card) of the newest model, and in
``released/<model id>/`` decode-only copies of the models lcf released before it. lcf finds this folder with
importlib.resources (``lcf.weights.DEFAULT_WEIGHTS``) and chooses among the models by the model id of each file
(``lcf.models``).
"""
