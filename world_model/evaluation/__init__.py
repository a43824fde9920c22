"""Evaluation: the paper's outbound-and-return protocol (:mod:`.protocol`), its report
(:mod:`.report`), frame metrics (:mod:`.metrics`) and videos (:mod:`.videos`)."""
