# Embeds the files of data/ (seed data: catalogue, calendar) as a C table
# fxb_datafiles of {name relative to data/, bytes, length}, so fxb-admin
# needs no source tree. FILES: absolute paths; BASE: the data/ folder.
set(body "")
set(count 0)
set(entries "")
foreach(f ${FILES})
  file(RELATIVE_PATH rel ${BASE} ${f})
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR len "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const unsigned char fxb_datafile_${count}[] = {${bytes}0};\n")
  list(APPEND entries "{\"${rel}\", (const char *)fxb_datafile_${count}, ${len}}")
  math(EXPR count "${count} + 1")
endforeach()
string(REPLACE ";" ",\n    " entries_txt "${entries}")
if(count EQUAL 0)
  set(entries_txt "{0, 0, 0}")
endif()
file(WRITE ${OUT} "/* generated from data/; do not edit */\n#include \"store/datafile.h\"\n${body}"
  "const fxb_datafile fxb_datafiles[] = {\n    ${entries_txt}\n};\n"
  "const size_t fxb_datafiles_count = ${count};\n")
