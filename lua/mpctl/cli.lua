-- placeholder: replaced by the real command line in the next commit
local M = {}
function M.main(argv, info) io.stderr:write("mpctl " .. info.version .. ": not yet\n") return 2 end
return M
