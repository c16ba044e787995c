"""lmms-eval's entry point (`lmms_eval.models` group, see pyproject.toml): registers `--model vidqa`.

Only lmms-eval imports this module, and only its registry: the model class loads when a run asks for it.
"""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="vidqa", chat_class_path="vidqa.evaluation.lmms_plugin.VidqaLMM")
