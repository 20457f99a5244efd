-- GET /api/v1/users/{id} with ids drawn uniformly from the 10,000 seeded users; an argument
-- after `--` is appended to the path (`/summary`: the user's three reads).
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(seed * 7919 + os.time())
  suffix = args[1] or ""
end
request = function()
  return wrk.format("GET", "/api/v1/users/" .. math.random(1, 10000) .. suffix)
end
