"""The optional Hugging Face transformers backend: sentiment (and intent) from a sequence-classification model on disk.

Only this file touches torch and transformers, and only when a model is loaded, so Tertulia runs without
them installed (`pip install 'tertulia[transformers]'` adds them). A model is read from a local
directory (what `save_pretrained` writes: config.json, the weights, the tokenizer files) with
`local_files_only=True`: nothing is ever downloaded. Inference runs on the CPU under
`torch.inference_mode()`, in batches of texts of similar length, each text cut to the model's limit.

What the model's `config.id2label` may say (case, "_" and "-" do not matter):
- sentiment: negative/neutral/positive (also neg/neu/pos, very negative/very positive, and the Spanish
  negativo/neutro/positivo); "1 star" .. "5 stars" (1-2 negative, 3 neutral, 4-5 positive);
  LABEL_0..LABEL_2 read as negative, neutral, positive; LABEL_0..LABEL_1 as negative, positive.
  Without a neutral class, a text is neutral when its score is within +-BINARY_NEUTRAL_BAND.
- intent: our five names (question, complaint, purchase_intent, praise, other), or LABEL_0..LABEL_4 in
  that order.
The probabilities of the labels that read as one class are added; sentiment_score = P(positive) -
P(negative). Language (and intent, without an intent model) come from the built-in model; toxicity
stays moderation's (see classify.classify_many).
"""

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from tertulia.listening.classify import HEADS, Model, Prediction, shipped

SENTIMENTS = HEADS["sentiment"]  # negative, neutral, positive
INTENTS = HEADS["intent"]
BATCH = 32  # texts per forward pass: enough to amortise the call, small enough for a short post's padding
MAX_TOKENS = 256  # a social post fits; a long blog post is judged on its opening
BINARY_NEUTRAL_BAND = 0.5  # |P(pos) - P(neg)| below this is neutral for a model without a neutral class

_SENTIMENT_NAMES = {
    "negative": 0, "neg": 0, "very negative": 0, "negativo": 0, "negativa": 0,
    "neutral": 1, "neu": 1, "neutro": 1, "neutra": 1,
    "positive": 2, "pos": 2, "very positive": 2, "positivo": 2, "positiva": 2,
}
_STARS = re.compile(r"([1-5]) stars?")
_GENERIC = re.compile(r"label (\d+)")
# RoBERTa-style models number positions from padding_idx + 1, so two of their position slots are not usable.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "mpnet": 2}


class BackendNotInstalled(ImportError):
    """torch or transformers is missing: the backend was asked for but cannot run."""


class ModelUnusable(ValueError):
    """The directory holds no model this backend can use (missing, unreadable, untrained or unmappable labels)."""


def _label(text: object) -> str:
    return " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())


def _ordered(id2label: Mapping) -> list[str]:
    try:
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError) as error:
        raise ModelUnusable(f"config.id2label has keys that are not class numbers: {sorted(map(str, id2label))}") \
            from error


def _generic(labels: list[str]) -> list[int] | None:
    """Class numbers of LABEL_0..LABEL_n-1 in order, or None if the labels are not all of that form."""
    numbers = [int(match.group(1)) if (match := _GENERIC.fullmatch(_label(name))) else None for name in labels]
    if any(number is None for number in numbers):
        return None
    return numbers if numbers == list(range(len(labels))) else None


def sentiment_classes(id2label: Mapping) -> list[int]:
    """For each of the model's outputs (in id order), our sentiment class: 0 negative, 1 neutral, 2 positive."""
    labels = _ordered(id2label)
    generic = _generic(labels)
    if generic is not None:
        if len(labels) == 3:
            return [0, 1, 2]
        if len(labels) == 2:
            return [0, 2]
        raise ModelUnusable(f"sentiment labels {labels} have no documented order (LABEL_0..LABEL_2 or "
                            "LABEL_0..LABEL_1 only); name the classes in config.json's id2label")
    classes: list[int] = []
    unknown = []
    for name in labels:
        label = _label(name)
        if label in _SENTIMENT_NAMES:
            classes.append(_SENTIMENT_NAMES[label])
        elif stars := _STARS.fullmatch(label):
            classes.append((0, 0, 1, 2, 2)[int(stars.group(1)) - 1])
        else:
            unknown.append(name)
    if unknown:
        raise ModelUnusable(f"sentiment labels {unknown} (of {labels}) cannot be read as negative, neutral or "
                            "positive; understood: negative/neutral/positive, neg/neu/pos, '1 star'..'5 stars', "
                            "LABEL_0..LABEL_2")
    if 0 not in classes or 2 not in classes:
        raise ModelUnusable(f"sentiment labels {labels} need both a negative and a positive class")
    return classes


def intent_classes(id2label: Mapping) -> list[int]:
    """For each of the model's outputs (in id order), the index of our intent (classify.HEADS["intent"])."""
    labels = _ordered(id2label)
    if _generic(labels) is not None:
        if len(labels) == len(INTENTS):
            return list(range(len(INTENTS)))
        raise ModelUnusable(f"intent labels {labels} have no documented order (LABEL_0..LABEL_{len(INTENTS) - 1} "
                            f"only, meaning {list(INTENTS)}); name the classes in config.json's id2label")
    ours = {name.replace("_", " "): index for index, name in enumerate(INTENTS)}
    unknown = [name for name in labels if _label(name) not in ours]
    if unknown:
        raise ModelUnusable(f"intent labels {unknown} (of {labels}) are not among {list(INTENTS)}")
    return [ours[_label(name)] for name in labels]


def _libraries():
    """torch and transformers, imported on first use and told never to reach the network."""
    # Read by huggingface_hub when it is imported; local_files_only below is the guarantee either way.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import torch
        import transformers
    except ImportError as error:
        raise BackendNotInstalled(
            f"the transformers backend needs torch and transformers ({error}); "
            "install them with: pip install 'tertulia[transformers]'") from error
    # Loading reports and progress bars would go to the command's stderr; refusals below say what matters.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return torch, transformers


class _Head:
    """One sequence-classification model and its tokenizer, and how its outputs read as our classes."""

    def __init__(self, path: str | os.PathLike, *, task: str):
        directory = Path(path).expanduser()
        if not directory.is_dir():
            # Checked here because from_pretrained would take a name that is not a directory as a Hub id.
            raise ModelUnusable(f"{task} model {str(directory)!r} is not a directory")
        torch, transformers = _libraries()
        self.torch = torch
        self.path = str(directory.resolve())
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path, local_files_only=True,
                                                                        trust_remote_code=False)
            self.model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
                self.path, local_files_only=True, trust_remote_code=False, output_loading_info=True)
        except Exception as error:  # OSError, ValueError, JSON or safetensors errors: all mean "not a usable model"
            raise ModelUnusable(f"{task} model {self.path!r} could not be loaded: {error}") from error
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            raise ModelUnusable(f"{task} model {self.path!r} has untrained weights (missing from the checkpoint: "
                                f"{', '.join(missing[:5])}); it is not a fine-tuned classifier")
        id2label = self.model.config.id2label
        self.classes = sentiment_classes(id2label) if task == "sentiment" else intent_classes(id2label)
        if len(self.classes) != self.model.config.num_labels:
            raise ModelUnusable(f"{task} model {self.path!r}: id2label names {len(self.classes)} classes, "
                                f"the model has {self.model.config.num_labels} outputs")
        self.model.to("cpu").eval()
        self.max_tokens = self._max_tokens()
        # Fast tokenizers are not safe to call from two threads at once, and one forward pass already
        # uses torch's own threads: the runner's threads take turns.
        self.lock = threading.Lock()

    def _max_tokens(self) -> int:
        limits = [MAX_TOKENS]
        declared = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(declared, int) and 0 < declared < 100_000:  # unset means a huge sentinel value
            limits.append(declared)
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0))
        return max(8, min(limits))

    def probabilities(self, texts: list[str]) -> list[list[float]]:
        """Probability of each of our classes (summed over the labels that read as it), per text, in order."""
        width = max(self.classes) + 1
        out: list[list[float]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
        torch = self.torch
        with self.lock, torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start:start + BATCH]
                encoded = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                         max_length=self.max_tokens, return_tensors="pt")
                probabilities = torch.softmax(self.model(**encoded).logits.float(), dim=-1)
                summed = torch.zeros((len(rows), width), dtype=probabilities.dtype)
                summed.index_add_(1, torch.tensor(self.classes), probabilities)
                for row, values in zip(rows, summed.tolist(), strict=True):
                    out[row] = values
        return out


class TransformersModel:
    """Sentiment from one local model and/or intent from another, language from the built-in model.

    Has the built-in Model's predict / predict_many, so `classify_many(texts, model=...)` takes it.
    Loading raises BackendNotInstalled or ModelUnusable.
    """

    def __init__(self, *, sentiment: str | os.PathLike | None = None, intent: str | os.PathLike | None = None,
                 builtin: Model | None = None):
        if not sentiment and not intent:
            raise ModelUnusable("a transformers model needs a sentiment or an intent model directory")
        self.sentiment = _Head(sentiment, task="sentiment") if sentiment else None
        self.intent = _Head(intent, task="intent") if intent else None
        self.builtin = builtin or shipped()

    def describe(self) -> dict:
        return {"backend": "transformers", "sentiment": self.sentiment.path if self.sentiment else "builtin",
                "intent": self.intent.path if self.intent else "builtin", "language": "builtin"}

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def predict_many(self, texts: list[str]) -> list[Prediction]:
        if not texts:
            return []
        texts = list(texts)
        base = self.builtin.predict_many(texts)
        if self.sentiment is not None:
            binary = 1 not in self.sentiment.classes
            sentiments = []
            for p in self.sentiment.probabilities(texts):
                negative, positive = p[0], p[2]
                score = max(-1.0, min(1.0, positive - negative))
                if binary:
                    index = 1 if abs(score) < BINARY_NEUTRAL_BAND else (2 if score > 0 else 0)
                else:
                    index = max(range(3), key=p.__getitem__)
                sentiments.append((SENTIMENTS[index], round(score, 3)))
        else:
            sentiments = [(p.sentiment, p.sentiment_score) for p in base]
        if self.intent is not None:
            intents = [INTENTS[max(range(len(p)), key=p.__getitem__)] for p in self.intent.probabilities(texts)]
        else:
            intents = [p.intent for p in base]
        return [Prediction(p.language, sentiment, score, intent)
                for p, (sentiment, score), intent in zip(base, sentiments, intents, strict=True)]
