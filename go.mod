module github.com/switchboard-rtc/switchboard

go 1.26.0
