-- wrk script: POST one GraphQL request on every request of every connection.
-- The JSON body is read once from the file named by the environment variable BENCH_BODY_FILE
-- (see bench/queries/*.json); run.sh sets it, and BENCH_TOKEN for the rows with a bearer token.
-- No response() callback, so wrk stays on its fast path: correctness is checked by run.sh with
-- curl before and after each run.
local path = os.getenv("BENCH_BODY_FILE")
if path == nil or path == "" then
  error("BENCH_BODY_FILE is not set")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
