"""The FFT form of torchlibrosa's STFT (models.fft_stft): the same spectrogram as the two dense
convolutions it replaces, the same state dict, and the laion models use it."""
from __future__ import annotations

import copy

import torch

from teminal.models.fft_stft import use_fft_stft


def _stfts(n_fft: int, hop: int):
    from torchlibrosa.stft import STFT

    conv = STFT(n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True,
                pad_mode="reflect", freeze_parameters=True)
    fft = copy.deepcopy(conv)
    assert use_fft_stft(fft) == 1 and use_fft_stft(fft) == 0   # once only
    return conv, fft


def test_fft_stft_equals_the_convolution_stft_to_float_rounding():
    torch.manual_seed(0)
    for n_fft, hop, samples in [(2048, 2560, 16000 * 3), (1024, 480, 48000), (512, 160, 8000)]:
        conv, fft = _stfts(n_fft, hop)
        x = torch.randn(3, samples)
        (r1, i1), (r2, i2) = conv(x), fft(x)
        assert r1.shape == r2.shape and i1.shape == i2.shape
        scale = torch.sqrt(r1 ** 2 + i1 ** 2).max()
        torch.testing.assert_close(r2, r1, rtol=0, atol=2e-5 * scale)
        torch.testing.assert_close(i2, i1, rtol=0, atol=2e-5 * scale)


def test_the_state_dict_is_unchanged_and_its_window_is_what_is_applied():
    conv, fft = _stfts(1024, 480)
    assert conv.state_dict().keys() == fft.state_dict().keys()
    for k, v in conv.state_dict().items():
        assert torch.equal(v, fft.state_dict()[k])
    # a checkpoint's weights are what the FFT form applies (the window is read back from them)
    with torch.no_grad():
        for s in (conv, fft):
            s.conv_real.weight.mul_(0.5)
            s.conv_imag.weight.mul_(0.5)
    x = torch.randn(2, 9600)
    torch.testing.assert_close(fft(x)[0], conv(x)[0], rtol=0, atol=1e-4)


def test_laion_models_compute_their_spectrogram_with_the_fft():
    from teminal.models.registry import load_model

    model = load_model("small")
    stft = model.clap.audio_branch.spectrogram_extractor.stft
    assert getattr(stft, "_teminal_fft", False)
