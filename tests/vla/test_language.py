import pytest
import torch

from vla.configuration import VisionConfig, VLAConfig
from vla.language import InstructionTokenizer, PretrainedTextEncoder, ScratchTextEncoder


def test_tokenizer_builds_vocab_and_encodes_with_masks():
    tok = InstructionTokenizer.build(["Pick up the red cube.", "put the cube in the bowl"])
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and "cube" in tok.vocab and "Pick" not in tok.vocab
    ids, mask = tok.encode(["pick up the GREEN cube", ""], max_len=6)
    assert ids.shape == (2, 6)
    assert ids[0, 3].item() == 1  # "green" is unknown
    assert mask[0].tolist() == [True] * 5 + [False] and mask[1].tolist() == [True] + [False] * 5
    with pytest.raises(ValueError, match="vocab: must start with"):
        InstructionTokenizer(["a", "b"])


def test_scratch_encoder_gradients_reach_used_words_only():
    enc = ScratchTextEncoder(InstructionTokenizer.build(["pick up the cube", "stack it"]).vocab, dim=8)
    tokens, mask = enc(["pick up the cube"])
    assert tokens.shape == (1, 16, 8) and mask.sum() == 4
    tokens[mask].sum().backward()
    used = enc.tokenizer.encode(["pick up the cube"], 16)[0][0, :4]
    rows = enc.embed.weight.grad.abs().sum(-1)
    assert (rows[used] > 0).all() and rows[enc.tokenizer.index["stack"]] == 0


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT and its WordPiece vocabulary, saved to a local folder."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "pick", "up", "the", "red", "cube", "put", "in", "bowl"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    cfg = transformers.BertConfig(
        vocab_size=len(words), hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(path)
    return path


def test_pretrained_text_encoder_from_local_path(tiny_bert):
    enc = PretrainedTextEncoder(tiny_bert, dim=16, max_len=8)
    tokens, mask = enc(["pick up the red cube", "put the cube in the bowl"])
    assert tokens.shape == (2, 8, 16) and mask[0].sum() == 7  # [CLS] 5 words [SEP]
    tokens.sum().backward()
    assert enc.proj.weight.grad is not None
    assert all(p.grad is None for p in enc._model[0].parameters())  # the language model stays frozen
    assert not any(k.startswith("_model") for k in enc.state_dict())  # its weights stay in their folder
    again, _ = enc(["pick up the red cube"])
    torch.testing.assert_close(again[0], tokens[0].detach())  # cached per instruction


def test_policy_with_pretrained_text(tiny_bert):
    from vla.modeling import FourDVLAPolicy

    cfg = VLAConfig(vision=VisionConfig(image_size=32, grid=2), d_model=16, layers=1, heads=2, ffn=32,
                    text="pretrained", text_path=str(tiny_bert), sampler="single")  # fmt: skip
    pol = FourDVLAPolicy(cfg, vocab=[])
    assert isinstance(pol.text, PretrainedTextEncoder)


def test_pretrained_text_needs_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a transformers model directory"):
        PretrainedTextEncoder(tmp_path, 8)
    with pytest.raises(ValueError, match="text_path: required"):
        VLAConfig(text="pretrained")
