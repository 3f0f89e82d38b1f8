-- wrk script: POST /keys/query for the benchmark user, authenticated.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ROAM_BENCH_TOKEN")
wrk.body = '{"device_keys": {"' .. os.getenv("ROAM_BENCH_USER") .. '": []}}'
