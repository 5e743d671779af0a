"""Test doubles for the whole suite, shipped in the package (as lhotse ships lhotse.testing).

    fakes.py   evaluation fakes whose answers are known (FakeModel, OrderBlindModel,
               RandomModel, OracleModel, CaptionModel) on coded clips (`encode`), understanding
               the wordings they are given (`Wordings`)
    toy.py     ToyClap, a tiny trainable model for fast trainer tests (`toy_factory`)
    files.py   tiny offline files of every real family (hf, msclap, tokenizers, a hub cache)

Every double implements the whole AudioTextModel interface (they share the real families' base,
teminal.models.adapter), so no caller probes for attributes. This package depends on
teminal.models only: fakes take an evaluator's wordings, they do not import one. None of the
doubles is a real family: `load_model` never returns one.
"""
from teminal.testing.fakes import (CODES, SAMPLE_RATE, VOCAB, WAVE_LEN, CaptionModel,
                                   FakeModel, OracleModel, OrderBlindModel, RandomModel,
                                   WeightlessModel, Wordings, encode, text_table, wave_key)
from teminal.testing.files import (TINY_HTSAT, place_in_hf_cache, tiny_hf_clap_config,
                                   tiny_msclap_text_config, tiny_small_hf_config,
                                   write_fake_bert_vocab, write_fake_gpt2_tokenizer,
                                   write_fake_roberta_tokenizer, write_tiny_hf_clap,
                                   write_tiny_hf_encoder, write_tiny_msclap)
from teminal.testing.toy import ToyClap, toy_factory

__all__ = ["CODES", "SAMPLE_RATE", "TINY_HTSAT", "VOCAB", "WAVE_LEN", "CaptionModel",
           "FakeModel", "OracleModel", "OrderBlindModel", "RandomModel", "ToyClap",
           "WeightlessModel", "Wordings", "encode", "place_in_hf_cache", "text_table",
           "tiny_hf_clap_config", "tiny_msclap_text_config", "tiny_small_hf_config",
           "toy_factory", "wave_key", "write_fake_bert_vocab", "write_fake_gpt2_tokenizer",
           "write_fake_roberta_tokenizer", "write_tiny_hf_clap", "write_tiny_hf_encoder",
           "write_tiny_msclap"]
