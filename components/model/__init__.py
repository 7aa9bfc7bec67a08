"""The DeSTA2.5-Audio model: Whisper encoder (frozen) -> Q-Former connector -> LLM (frozen, optional LoRA).

Modules: `qformer` (the connector), `encoder` (tapped Whisper states + their cache), `prompt`
(chat-template token sequences with audio spans and response-only labels), `desta` (the model,
generation, save/load), `official` (the official release's checkpoint layout).
"""

from components.model.desta import DestaModel, DestaSpec

__all__ = ["DestaModel", "DestaSpec"]
