"""Helpers of the reliability and security suite (tests/chaos): load clients, own brokers and
databases, process probes and the figures each case reports."""
