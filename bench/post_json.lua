-- wrk script: POST the JSON body in ROAM_BENCH_BODY (unauthenticated), e.g. a bulk query.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("ROAM_BENCH_BODY")
