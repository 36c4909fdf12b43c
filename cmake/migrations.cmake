# Embeds ordered Lua scripts (NNNN_name.lua) as a C table named TABLE
# (migrations/ -> fxb_migrations, migrations/demo/ -> fxb_demo_scripts).
set(body "")
set(count 0)
foreach(f ${FILES})
  get_filename_component(name ${f} NAME_WE)
  string(REGEX MATCH "^[0-9]+" ver ${name})
  math(EXPR ver "${ver}")
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const unsigned char ${TABLE}_${count}[] = {${bytes}0};\n")
  list(APPEND entries "{${ver}, \"${name}\", (const char *)${TABLE}_${count}}")
  math(EXPR count "${count} + 1")
endforeach()
string(REPLACE ";" ",\n    " entries_txt "${entries}")
if(count EQUAL 0)
  set(entries_txt "{0, 0, 0}")
endif()
file(WRITE ${OUT} "/* generated from migrations/; do not edit */\n#include \"store/migrate.h\"\n${body}"
  "const fxb_migration ${TABLE}[] = {\n    ${entries_txt}\n};\n"
  "const size_t ${TABLE}_count = ${count};\n")
