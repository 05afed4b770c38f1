package chat

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// strftime formats t as C's strftime (and so Python's datetime.strftime) in
// the C locale. It covers the directives chat templates use (Llama 3.x writes
// "%d %b %Y") and the rest of C99's common set, plus glibc's "%-d" style
// no-padding flag; an unknown directive is copied as it stands, as glibc does.
func strftime(t time.Time, format string) (string, error) {
	if len(format) > 4096 {
		return "", fmt.Errorf("%w: strftime format over 4096 bytes", ErrLimit)
	}
	var b strings.Builder
	pad := func(n, width int, noPad bool) {
		s := strconv.Itoa(n)
		if !noPad {
			for i := len(s); i < width; i++ {
				b.WriteByte('0')
			}
		}
		b.WriteString(s)
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		noPad := false
		if format[i] == '-' && i+1 < len(format) {
			noPad = true
			i++
		}
		hour12 := t.Hour() % 12
		if hour12 == 0 {
			hour12 = 12
		}
		switch format[i] {
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'd':
			pad(t.Day(), 2, noPad)
		case 'e':
			if noPad {
				pad(t.Day(), 1, true)
			} else {
				fmt.Fprintf(&b, "%2d", t.Day())
			}
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'H':
			pad(t.Hour(), 2, noPad)
		case 'I':
			pad(hour12, 2, noPad)
		case 'j':
			pad(t.YearDay(), 3, noPad)
		case 'm':
			pad(int(t.Month()), 2, noPad)
		case 'M':
			pad(t.Minute(), 2, noPad)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'S':
			pad(t.Second(), 2, noPad)
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b.WriteString(strconv.Itoa(wd))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'y':
			pad(t.Year()%100, 2, noPad)
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if noPad {
				b.WriteByte('-')
			}
			b.WriteByte(format[i])
		}
	}
	return b.String(), nil
}
