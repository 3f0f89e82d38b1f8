-- wrk script: GET /account/whoami, authenticated.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ROAM_BENCH_TOKEN")
