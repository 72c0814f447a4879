"""The counterfactual stage: targets and plans, prompts, the offline expert, the verifier, generation and reuse."""
