"""JSON-schema-constrained decoding for transformers `generate` (as vLLM's guided decoding does),
with lm-format-enforcer: at every step only the tokens that keep the completion a prefix of a JSON
value valid under the schema may be drawn, and the end of sequence only once the value is complete.
The JSON is compact (no run of whitespace longer than one character, inside strings too: small
models otherwise spend their tokens on newlines) and its fields come in the schema's `required`
order.

lm-format-enforcer's own transformers adapter does not import under transformers 5, so the
tokenizer's vocabulary is analysed here, with its public API (`TokenEnforcerTokenizerData`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


class JsonGrammar:
    """The vocabulary of one tokenizer, analysed once (about a second for 49k tokens); `allowed`
    makes the per-request `prefix_allowed_tokens_fn` of `generate`."""

    def __init__(self, tokenizer):
        from lmformatenforcer import TokenEnforcerTokenizerData

        size = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        regular = []
        for token in range(size):
            if token in special:
                continue
            # decoded after "0", less the "0": keeps a leading space that decoding alone may drop
            after_zero = tokenizer.decode([zero, token])[1:]
            regular.append((token, after_zero, len(after_zero) > len(tokenizer.decode([token]))))
        self.data = TokenEnforcerTokenizerData(regular, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"),
                                               tokenizer.eos_token_id, False, size)

    def allowed(self, schema: dict, prompt_length: int) -> Callable:
        """`prefix_allowed_tokens_fn` for one generation of one sequence whose prompt has
        `prompt_length` tokens: the tokens allowed after what was generated so far, under the JSON
        `schema`."""
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        parser = JsonSchemaParser(schema)
        enforcer = TokenEnforcer(self.data, parser)  # sets the parser's config to the vocabulary's alphabet
        parser.config = dataclasses.replace(parser.config, max_consecutive_whitespaces=1,
                                            force_json_field_order=True)

        def allowed(_batch: int, ids) -> list[int]:
            return enforcer.get_allowed_tokens(ids[prompt_length:].tolist()).allowed_tokens

        return allowed
