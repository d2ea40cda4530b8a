"""Genome compressors: a tokenizer over chunked weights, an encoder to a small code `z`, and a
decoder (a hypernetwork) from `z` back to every weight of the network.

    tokenizer.py   genome <-> normalised tokens (P, T, C), one tensor per token run, metadata
    layers.py      attention blocks (full / windowed SDPA), cross-attention, Fourier features
    base.py        what every compressor shares: norm buffers, genome API, prior, fitness head
    attention.py   `Compressor`: the self-attention autoencoder (encoder, decoder assembly)
    decoder.py     the decoder's pieces: window layout, token blocks, positive-tensor decoding
    mlp.py         `MLPAutoencoder`: a flat MLP over the whole genome (small networks only)
    losses.py      the combined pretraining / fine-tuning loss
    mixin.py       safetensors-only save/load through the Hugging Face Hub mixin
    hub.py         `load_compressor`, push / pull, model cards, the bundled compressors and
                   a LoRA compressor's base network (`base_weights_path`)
    protocol.py    `CompressorProtocol`: what the evolution loop needs of a compressor
"""

from latent_evo.compressor.attention import Compressor, CompressorConfig
from latent_evo.compressor.hub import bundled_compressor_path, load_compressor
from latent_evo.compressor.losses import compressor_loss
from latent_evo.compressor.mlp import MLPAutoencoder, MLPAutoencoderConfig
from latent_evo.compressor.protocol import CompressorProtocol
from latent_evo.compressor.tokenizer import Tokenizer, TokenMeta

__all__ = [
    "Compressor",
    "CompressorConfig",
    "MLPAutoencoder",
    "MLPAutoencoderConfig",
    "TokenMeta",
    "Tokenizer",
    "CompressorProtocol",
    "bundled_compressor_path",
    "compressor_loss",
    "load_compressor",
]
