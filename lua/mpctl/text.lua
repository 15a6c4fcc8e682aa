-- mpctl.text: small text helpers shared by the command line and the library.
local M = {}

-- Levenshtein distance, case-insensitive.
function M.distance(a, b)
  a, b = a:lower(), b:lower()
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- `candidates` sorted by closeness to `word` (a substring either way counts as distance 1),
-- ties by name. With `limit`, only the reasonably close ones, at most `limit` of them: the
-- "did you mean" list.
function M.closest(word, candidates, limit)
  local scored = {}
  for _, c in ipairs(candidates) do
    local d = M.distance(word, c)
    if c:lower():find(word:lower(), 1, true) or word:lower():find(c:lower(), 1, true) then d = math.min(d, 1) end
    if not limit or d <= math.max(2, #word // 2) then scored[#scored + 1] = { c, d } end
  end
  table.sort(scored, function(x, y) if x[2] ~= y[2] then return x[2] < y[2] end return x[1] < y[1] end)
  local out = {}
  for i = 1, limit and math.min(limit, #scored) or #scored do out[i] = scored[i][1] end
  return out
end

return M
