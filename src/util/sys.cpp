#include "util/sys.h"

#include "util/error.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace flashmoe {

uint64_t parse_size(const std::string& text, const std::string& what) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    std::string number = text.substr(0, i), unit = text.substr(i);
    char* end = nullptr;
    double v = number.empty() ? -1 : std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(v) || v < 0) {
        fail(ErrorKind::BadInput, "{} '{}' is not a size (e.g. 6GiB, 512MiB, 4096)", what, text);
    }
    std::string u;
    for (char c : unit) u += char(std::tolower(static_cast<unsigned char>(c)));
    double mult;
    if (u.empty() || u == "b") mult = 1;
    else if (u == "k" || u == "kib") mult = 1024.0;
    else if (u == "m" || u == "mib") mult = 1024.0 * 1024;
    else if (u == "g" || u == "gib") mult = 1024.0 * 1024 * 1024;
    else if (u == "t" || u == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
    else if (u == "kb") mult = 1e3;
    else if (u == "mb") mult = 1e6;
    else if (u == "gb") mult = 1e9;
    else if (u == "tb") mult = 1e12;
    else fail(ErrorKind::BadInput, "{} '{}': unknown unit '{}' (use KiB, MiB, GiB, TiB, KB, MB, GB, TB)", what, text, unit);
    double bytes = v * mult;
    if (bytes > 1.8e19) fail(ErrorKind::BadInput, "{} '{}' is too large", what, text);
    return uint64_t(bytes);
}

uint64_t peak_rss_bytes() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return uint64_t(ru.ru_maxrss) * 1024;
}

uint64_t current_rss_bytes() {
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long pages = 0, resident = 0;
    int n = std::fscanf(f, "%lu %lu", &pages, &resident);
    std::fclose(f);
    return n == 2 ? uint64_t(resident) * uint64_t(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace flashmoe
