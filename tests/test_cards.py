"""Model cards: every registered model has one, and what it says matches the model the registry builds."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.models.cards import CARDS
from hrvit_kernels.flops import count_params


def test_every_registered_model_has_a_card_and_no_card_is_orphaned():
    assert set(CARDS) == set(hk.list_models())
    with pytest.raises(ValueError, match="model_card: no card for 'hrvit_b9'"):
        hk.model_card("hrvit_b9")


@pytest.mark.parametrize("name", [n for n in CARDS if CARDS[n].dataset is not None])
def test_segmentor_cards_match_the_built_model(name):
    card = hk.model_card(name)
    assert card.test_mode in ("whole", "slide") and len(card.mean) == len(card.std) == 3
    if card.test_mode == "slide":
        assert 0 < card.test_stride <= card.test_crop
    model = hk.create_model(name)
    if card.params is not None:
        assert count_params(model) == card.params
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape[1] == card.num_classes
    if card.family == "segvit":  # the fixed-size position embeddings are built for the card's input size
        grid = card.input_size // 16
        assert model.backbone.pos_embed.shape[1] in (grid * grid, grid * grid + 1)


def test_card_figures_are_complete_where_the_papers_give_them():
    for card in CARDS.values():
        assert card.input_size > 0 and (card.release_gmacs or 0) > 0 or card.name.startswith("setr_hlg")
        if card.dataset is not None:
            assert card.paper_miou is not None
    assert torch.tensor([c.decode_channels for c in CARDS.values() if c.family == "hrvit" and c.dataset]).tolist() \
        == [256, 256, 768]
