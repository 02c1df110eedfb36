"""WAF corpora (tests/fixtures/waf/): the loader, the request renderer and the tests of the corpus itself."""
