-- wrk: POST a small JSON document.
wrk.method = "POST"
wrk.body = '{"name":"Shoal","n":1}'
wrk.headers["Content-Type"] = "application/json"
