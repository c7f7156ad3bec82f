"""A tiny image projector (llama.cpp "mmproj" GGUF) with random weights, for the bundled model.

No vision model can be downloaded here, and none ships in a package. What can be made is a
projector of llama.cpp's own kind for the bundled SmolLM2-135M (whose text backbone is
SmolVLM-256M's): a one-layer SigLIP encoder whose output has the text model's width (576),
written with the ``gguf`` package under the names and keys that llama.cpp's
``tools/mtmd/clip.cpp`` reads. Its words about an image are nonsense; what it proves is that
the real multimodal path loads a model with its projector and turns an image into tokens.

The projector kind is Gemma 3's (a SigLIP encoder, average pooling, a projection), not
SmolVLM's idefics3: idefics3 frames each image with tokens looked up in SmolVLM's own
vocabulary (``<fake_token_around_image>``, ``<global-img>``), which SmolLM2's lacks. Gemma 3
frames it with text, which any vocabulary can spell.
"""

from __future__ import annotations

from pathlib import Path

TEXT_WIDTH = 576  # SmolLM2-135M's embedding length
IMAGE_SIZE = 64
PATCH_SIZE = 8
POOL = 2  # each side of the 8 × 8 patch grid pooled by 2: 16 tokens per image
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE // POOL) ** 2
WIDTH, HEADS, FFN = 64, 4, 128

# SmolVLM's chat template, which reads a message as parts: SmolLM2's own adds its content to
# a string, so the bundled model is given this one as an admin's override would give it.
PARTS_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def tiny_projector_write(path: Path, *, text_width: int = TEXT_WIDTH, seed: int = 0) -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)

    def weight(*shape: int, dtype=np.float32):
        # numpy shapes are ggml's reversed: (out, in) for a matrix that maps in to out.
        return (rng.standard_normal(shape) * 0.02).astype(dtype)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("general.name", "tiny random projector (tests)")
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", WIDTH)
    writer.add_uint32("clip.vision.feed_forward_length", FFN)
    writer.add_uint32("clip.vision.block_count", 1)
    writer.add_uint32("clip.vision.projection_dim", text_width)
    writer.add_uint32("clip.vision.attention.head_count", HEADS)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_uint32("clip.vision.projector.scale_factor", POOL)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    ones, zeros = np.ones(WIDTH, np.float32), np.zeros(WIDTH, np.float32)
    tensors = {
        "v.patch_embd.weight": weight(WIDTH, 3, PATCH_SIZE, PATCH_SIZE, dtype=np.float16),
        "v.patch_embd.bias": zeros,
        "v.position_embd.weight": weight(patches, WIDTH),
        "v.blk.0.ln1.weight": ones,
        "v.blk.0.ln1.bias": zeros,
        "v.blk.0.ln2.weight": ones,
        "v.blk.0.ln2.bias": zeros,
        "v.blk.0.ffn_up.weight": weight(FFN, WIDTH),
        "v.blk.0.ffn_up.bias": np.zeros(FFN, np.float32),
        "v.blk.0.ffn_down.weight": weight(WIDTH, FFN),
        "v.blk.0.ffn_down.bias": zeros,
        "v.post_ln.weight": ones,
        "v.post_ln.bias": zeros,
        "mm.soft_emb_norm.weight": ones,
        "mm.input_projection.weight": weight(WIDTH, text_width),
    }
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensors[f"v.blk.0.{name}.weight"] = weight(WIDTH, WIDTH)
        tensors[f"v.blk.0.{name}.bias"] = zeros
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
