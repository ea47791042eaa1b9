"""Which classifier a store's posts go through: the built-in model, or a local transformers model the site configured.

Settings (docs/listening.md, "Transformers backend"), each a mapping of store slug, or "*" for every
other store, to a model directory on this machine; an empty path means the built-in model:
- TERTULIA_LISTENING_MODELS: sentiment model per store;
- TERTULIA_LISTENING_INTENT_MODELS: intent model per store.
From the environment: `TERTULIA_LISTENING_MODELS="tienda=/srv/models/sentiment-es,*=/srv/models/multi"`.

Loaded models are kept per directory for the life of the process (thread-safe: each is loaded once
even when the runner's threads ask together). A model that cannot be loaded is logged once and the
store classifies with the built-in model, so listening never stops for a broken model directory;
fix it and restart the worker (or call `cache_clear()`).
"""

import logging
import threading

from django.conf import settings

from tertulia.listening.backends.huggingface import BackendNotInstalled, ModelUnusable, TransformersModel
from tertulia.listening.classify import Classifier

__all__ = ["BackendNotInstalled", "ModelUnusable", "TransformersModel", "cache_clear", "classifier_for_store",
           "model_paths_for_store", "transformers_model"]

logger = logging.getLogger(__name__)

_Key = tuple[str, str]  # (sentiment directory, intent directory); "" for the built-in model's head
_loaded: dict[_Key, TransformersModel] = {}
_failed: dict[_Key, str] = {}
_loading: dict[_Key, threading.Lock] = {}
_guard = threading.Lock()


def transformers_model(*, sentiment: str = "", intent: str = "") -> TransformersModel:
    """The model of these directories, loaded once per process. Raises BackendNotInstalled or ModelUnusable."""
    key = (str(sentiment or ""), str(intent or ""))
    with _guard:
        model = _loaded.get(key)
        if model is not None:
            return model
        lock = _loading.setdefault(key, threading.Lock())
    with lock:  # one thread loads; the others wait for it instead of loading the same files again
        model = _loaded.get(key)
        if model is None:
            model = TransformersModel(sentiment=key[0] or None, intent=key[1] or None)
            with _guard:
                _loaded[key] = model
        return model


def _configured(name: str) -> dict[str, str]:
    return {str(slug).strip(): str(path or "").strip() for slug, path in (getattr(settings, name, None) or {}).items()}


def model_paths_for_store(*, store_id: int | None) -> _Key:
    """(sentiment directory, intent directory) configured for the store; "" where it uses the built-in model."""
    sentiments = _configured("TERTULIA_LISTENING_MODELS")
    intents = _configured("TERTULIA_LISTENING_INTENT_MODELS")
    if not sentiments and not intents:
        return "", ""
    slug = None
    if store_id is not None and (set(sentiments) | set(intents)) - {"*"}:
        from tertulia.core.models import Store

        slug = Store.objects.filter(pk=store_id).values_list("slug", flat=True).first()
    return (sentiments[slug] if slug in sentiments else sentiments.get("*", ""),
            intents[slug] if slug in intents else intents.get("*", ""))


def classifier_for_store(*, store_id: int | None) -> Classifier | None:
    """The store's transformers model, or None for the built-in model (also when its model cannot be loaded)."""
    key = model_paths_for_store(store_id=store_id)
    if key == ("", ""):
        return None
    with _guard:
        if key in _failed:
            return None
    try:
        return transformers_model(sentiment=key[0], intent=key[1])
    except Exception as error:  # whatever the files or the library do, listening goes on with the built-in model
        expected = isinstance(error, BackendNotInstalled | ModelUnusable)
        with _guard:
            first = key not in _failed
            _failed[key] = str(error)
        if first:
            logger.error("listening model unavailable; the store classifies with the built-in model",
                         exc_info=not expected, extra={"store_id": store_id, "sentiment_model": key[0],
                                                       "intent_model": key[1], "reason": str(error)})
        return None

def cache_clear() -> None:
    """Forget loaded and failed models (tests; a worker picks up a fixed directory after this)."""
    with _guard:
        _loaded.clear()
        _failed.clear()
        _loading.clear()
