"""One SAE instance written in SAELens's on-disk format (a folder SAELens's ``SAE.load_from_disk``
reads): ``cfg.json`` and ``sae_weights.safetensors``.

SAELens stores ``W_enc`` as ``[d_in, d_sae]`` and ``W_dec`` as ``[d_sae, d_in]`` (ours are both
``[latent, hidden]``, so the encoder is transposed) and by default subtracts ``b_dec`` from the
input before encoding; our encoder does not, so the config says ``apply_b_dec_to_input: false``.
The architectures map as follows:

- ``relu_l1`` -> ``standard`` (ReLU latents);
- ``topk`` -> ``topk`` with its ``k``;
- ``jumprelu`` -> ``jumprelu`` with ``threshold = exp(log_threshold)`` per latent;
- ``batchtopk`` and ``matryoshka`` -> ``jumprelu`` with their inference threshold on every latent
  (what they compute outside training; SAELens does the same conversion when it saves a
  BatchTopK SAE for inference).

With those, SAELens's forward pass (``encode``, ``decode``) computes what ours does.

The folder follows the config layout of SAELens 6 (checked against sae-lens 6.54 by
``tests/test_sae_saelens.py``, which loads every architecture with ``SAE.load_from_disk`` and
compares its ``encode`` and ``decode`` with ours). SAELens chooses how to read a ``cfg.json`` by
``metadata.sae_lens_version``: without it, it takes the folder for a pre-6 one, fills in defaults
meant for language-model SAEs (``prepend_bos``, ...) and drops every metadata key it does not
know, ours included. So the metadata names the format version, ``SAELENS_FORMAT``, and says
that SAELens did not train the SAE (``sae_lens_training_version: null``).
"""

from pathlib import Path
from typing import Any

import torch

from superposition import __version__, files
from superposition.errors import ConfigError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_FORMAT = "6.0.0"
"""The SAELens version whose folder layout this writes (``metadata.sae_lens_version``)."""


def saelens_state(
    architecture: str,
    params: dict[str, torch.Tensor],
    instance: int,
    n_latents: int,
    k: int = 0,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The cfg dict and tensors of SAE instance ``instance`` (its first ``n_latents`` latents)."""
    if not 0 < n_latents <= params["W_dec"].shape[1]:
        raise ConfigError(f"n_latents must be in 1..{params['W_dec'].shape[1]}, got {n_latents}")
    if architecture == "topk" and not 0 < k <= n_latents:
        raise ConfigError(f"k of a topk SAE must be in 1..{n_latents}, got {k}")
    W_enc = params["W_enc"][instance, :n_latents]
    W_dec = params["W_dec"][instance, :n_latents]
    tensors = {
        "W_enc": W_enc.T.contiguous(),
        "b_enc": params["b_enc"][instance, :n_latents].clone(),
        "W_dec": W_dec.clone(),
        "b_dec": params["b_dec"][instance].clone(),
    }
    cfg: dict[str, Any] = {
        "d_in": int(W_dec.shape[-1]),
        "d_sae": int(n_latents),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT,
            "sae_lens_training_version": None,
            "exported_by": f"superposition {__version__}",
            "source_architecture": architecture,
        },
    }
    if architecture == "relu_l1":
        cfg["architecture"] = "standard"
    elif architecture == "topk":
        # SAELens can rescale pre-activations by the decoder norms before the top k; ours does
        # not (and its training config defaults to doing so), so say it
        cfg["architecture"], cfg["k"] = "topk", int(k)
        cfg["rescale_acts_by_decoder_norm"] = False
    elif architecture == "jumprelu":
        cfg["architecture"] = "jumprelu"
        tensors["threshold"] = params["log_threshold"][instance, :n_latents].exp()
    elif architecture in ("batchtopk", "matryoshka"):
        cfg["architecture"] = "jumprelu"
        theta = params["threshold"][instance].clamp_min(0.0)
        tensors["threshold"] = theta.expand(n_latents).clone()
    else:
        raise ConfigError(f"no SAELens export for architecture {architecture!r}")
    return cfg, {name: t.detach().float().cpu().contiguous() for name, t in tensors.items()}


def export_saelens(
    architecture: str,
    params: dict[str, torch.Tensor],
    instance: int,
    n_latents: int,
    out: str | Path,
    *,
    k: int = 0,
) -> Path:
    """Write SAE instance ``instance`` to the folder ``out`` (atomically) in SAELens's format."""
    if not 0 <= instance < params["W_dec"].shape[0]:
        raise ConfigError(f"instance must be below {params['W_dec'].shape[0]}, got {instance}")
    out = Path(out)
    check_export_target(out)
    cfg, tensors = saelens_state(architecture, params, instance, n_latents, k)
    with files.atomic_folder(out) as tmp:
        files.write_json(tmp / CFG_FILE, cfg, atomic=False)
        files.write_safetensors(tmp / WEIGHTS_FILE, tensors, atomic=False)
    return out


def check_export_target(out: Path) -> None:
    """Refuse an export folder that exists, unless it is an empty folder."""
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ConfigError(f"{out} already exists; export to a new folder")
