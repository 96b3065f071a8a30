from twisted.application.service import ServiceMaker

ppypi = ServiceMaker("ppypi", "ppypi.tap", "A private Python package index.", "ppypi")
