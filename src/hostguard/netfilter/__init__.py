"""A model of netfilter rulesets (nftables and iptables) and who can reach a local port through them."""
