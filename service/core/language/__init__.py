"""Language models: token cross-entropy over sequences, perplexities, and servers' logprobs."""
