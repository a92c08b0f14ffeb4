-- wrk script: POST the AdmissionReview bodies listed in the file given after `--`, round-robin.
local bodies = {}
local index = 0

init = function(args)
  for path in io.lines(args[1]) do
    local file = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
  end
end

request = function()
  index = index % #bodies + 1
  return wrk.format("POST", "/mutate?timeout=5s", {["Content-Type"] = "application/json"}, bodies[index])
end
