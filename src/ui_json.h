/* JSON <-> Lua values through cJSON, for mpctl.ui (json_encode/json_decode, --json events).
 *
 * Mapping:
 *   nil, ui.null      <-> null          (ui.null is a light userdata sentinel: JSON null decodes to it)
 *   boolean           <-> true/false
 *   integer           <-> number without fraction/exponent within +-2^53 (exact both ways)
 *   float             <-> number        (NaN and infinities cannot be encoded)
 *   string            <-> string        (bytes that are not valid UTF-8 are encoded as U+0080..U+00FF)
 *   table, keys 1..n  <-> array
 *   table with the array marker metatable (ui.array(t)) <-> array, even when empty
 *   any other table   <-> object        (keys: strings, or integers written in decimal; sorted)
 * Decoded arrays carry the array marker, so an empty array encodes back as [].
 */
#ifndef MPCTL_UI_JSON_H
#define MPCTL_UI_JSON_H

#include "mpctl.h"

/* Registry key of the array marker metatable. */
#define UI_JSON_ARRAY_MT "mpctl.json.array"

/* Push the JSON text for the value at `idx` (pretty: indented). Raises on values JSON cannot hold. */
void ui_json_encode(lua_State *L, int idx, int pretty);

/* Decode s[0..len) and push the value (s[len] must be the NUL that ends every Lua string); raises "json: ... at offset N" on malformed input. */
void ui_json_decode(lua_State *L, const char *s, size_t len);

/* Push the null sentinel. */
void ui_json_push_null(lua_State *L);

/* Create (once) the array marker metatable and leave it on the stack. */
void ui_json_push_array_mt(lua_State *L);

#endif
