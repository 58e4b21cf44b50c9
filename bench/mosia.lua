-- wrk script for the reference row: the fake Mosia alone, without the gateway. Sends the
-- sandbox's Mosia token and the benchmark beneficiary's chaveUnica, as the gateway would.
wrk.method = "GET"
wrk.headers["Authorization"] = "sandbox-mosia-token"
wrk.headers["chaveUnica"] = "13331584754"
wrk.headers["totalProtocolos"] = "5"
